//! The HTTP faces of Latchkey over the challenge engine.
//!
//! - [`service`]: the use cases (create a magic link, consume a link, exchange a code, manage
//!   applications). They combine the engine's rules with the store and the outbox and return
//!   one [`service::ServiceError`]. No HTTP here.
//! - [`http`]: thin adapters that parse requests into engine types, call the service and shape
//!   responses: the native API, OAuth/OIDC, the landing pages, development pages, operations.

pub mod http;
pub mod service;

pub use http::router;
pub use service::{Service, ServiceConfig};
