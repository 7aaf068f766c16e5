//! E-mail: what Latchkey sends and how it gets there.
//!
//! A message is rendered in the request from [`templates`] (built in per purpose and locale,
//! overridable per application), wrapped by [`compose`], sealed and written to the outbox in
//! the same transaction as its challenge, and delivered later by the [`OutboxWorker`] through a
//! [`Mailer`]: SMTP ([`SmtpMailer`]) or, with no SMTP configured, the [`DevMailbox`]. The
//! [`sink`] module is a small SMTP server for tests and benchmarks.

pub mod compose;
mod dev_mailbox;
mod dkim;
mod email;
mod locale;
mod mailer;
mod outbox;
pub mod sink;
mod smtp;
mod smtp_conn;
pub mod templates;

pub use dev_mailbox::DevMailbox;
pub use dkim::{DkimAlgorithm, DkimKeyError, DkimSigner, GeneratedKey, sender_domain};
pub use email::Email;
pub use locale::{InvalidLocale, Locale, MAX_LOCALE_LEN};
pub use mailer::{DeliveryError, Mailer};
pub use outbox::{DEFAULT_SUPPRESSION, OutboxWorker, WorkerConfig, backoff};
pub use smtp::{SmtpConfigError, SmtpMailer, SmtpOptions};

#[cfg(test)]
mod smtp_tests;
