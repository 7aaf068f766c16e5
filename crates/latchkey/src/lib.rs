//! The Latchkey binary's library: configuration, wiring the parts together, and the commands.
//! Integration tests start the server through [`run::start`], exactly as `latchkey serve` does.

pub mod config;
pub mod dkim;
pub mod mail_dns;
pub mod run;
mod secrets;
pub mod serve;
mod storage;

pub use config::Config;
pub use run::{Running, StartOptions, start};
pub use storage::{backup, migrate_data};
