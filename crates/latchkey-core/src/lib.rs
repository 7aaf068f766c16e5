//! The challenge engine: the domain types and rules behind every e-mail sign-in flow.
//!
//! Nothing here does I/O. Time is always an argument (`now`), randomness comes from the OS
//! generator through [`secret`], and every value that crosses the edge of the server is parsed
//! into a type that cannot be invalid ([`EmailAddress`], [`RedirectUri`], the ids).

pub mod application;
pub mod bounded;
pub mod challenge;
pub mod clock;
pub mod email;
pub mod event;
pub mod hosted;
pub mod id;
pub mod link_view;
pub mod organization;
pub mod pkce;
pub mod rate_limit;
pub mod redirect;
pub mod refresh;
pub mod secret;
pub mod signing;
pub mod tokens;
pub mod user;

pub use application::{Application, Branding, Lifetimes};
pub use challenge::{AuthorizationCode, Challenge, ChallengeStatus, Purpose};
pub use clock::{Clock, ManualClock, SystemClock};
pub use email::EmailAddress;
pub use id::Id;
pub use redirect::RedirectUri;
pub use secret::{MasterKey, OpaqueToken, Otp};
pub use user::User;
