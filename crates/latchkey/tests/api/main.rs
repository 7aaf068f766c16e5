//! The HTTP integration suite: one test binary, every test against a server started on port
//! 0 with a fresh database, reading the mail it sent through a real SMTP conversation.
//! Each test runs on SQLite, and on PostgreSQL when `LATCHKEY_TEST_DATABASE_URL` is set.

mod helpers;

mod applications;
mod autharmor;
mod bad_input;
mod cli;
mod codes_and_tokens;
mod crash;
mod cryptr;
mod dev_mode;
mod hardening;
mod hosted;
mod hosted_browser;
mod limits_and_keys;
mod link_views;
mod magic_link;
mod mail_delivery;
mod mail_templates;
mod metrics;
mod multi_instance;
mod oidc;
mod openapi;
mod package;
mod races;
mod readiness;
mod registrations_and_orgs;
mod sdk_autharmor;
mod sdk_dkim;
mod sdk_openid_client;
mod sdk_workos;
mod shutdown;
mod suppressions;
mod transmit;
mod users_and_events;
mod workos;
