//! What the use cases count, for the operator's metrics (`GET /metrics`). Names and labels are
//! defined here once; the exporter that renders them lives with the HTTP faces. Labels are
//! bounded: purposes, methods, grants and kinds are fixed words, applications are their ids.

use latchkey_core::Application;
use latchkey_core::challenge::{Challenge, Purpose};
use latchkey_core::link_view::ViewMethod;
use latchkey_core::rate_limit::RateLimitKind;
use metrics::counter;

/// A challenge was written (its e-mail, if any, queued with it).
pub fn challenge_created(challenge: &Challenge) {
    counter!("latchkey_challenges_created_total", "purpose" => challenge.purpose.as_str(), "application" => challenge.app_id.to_string())
        .increment(1);
}

/// A challenge's e-mail was not queued: its address is suppressed.
pub fn mail_suppressed() {
    counter!("latchkey_mail_suppressed_total").increment(1);
}

/// How a challenge was used up.
#[derive(Debug, Clone, Copy)]
pub enum Consumed {
    /// Its link's button was pressed.
    Link,
    /// Its one-time code was exchanged.
    Code,
    /// A registration or verification token was validated or redeemed.
    Token,
}

impl Consumed {
    fn as_str(self) -> &'static str {
        match self {
            Self::Link => "link",
            Self::Code => "code",
            Self::Token => "token",
        }
    }
}

pub fn challenge_consumed(purpose: Purpose, app: &Application, how: Consumed) {
    counter!("latchkey_challenges_consumed_total", "purpose" => purpose.as_str(), "application" => app.id.to_string(), "method" => how.as_str())
        .increment(1);
}

/// Someone tried a challenge that had expired.
pub fn challenge_expired(purpose: Purpose, app: &Application) {
    counter!("latchkey_challenges_expired_total", "purpose" => purpose.as_str(), "application" => app.id.to_string())
        .increment(1);
}

pub fn challenge_revoked(purpose: Purpose, app: &Application) {
    counter!("latchkey_challenges_revoked_total", "purpose" => purpose.as_str(), "application" => app.id.to_string())
        .increment(1);
}

/// A wrong one-time code; `burned` when it was the last try the challenge had.
pub fn otp_failed(app: &Application, burned: bool) {
    counter!("latchkey_otp_failures_total", "application" => app.id.to_string()).increment(1);
    if burned {
        counter!("latchkey_otp_burned_total", "application" => app.id.to_string()).increment(1);
    }
}

/// The grants tokens are issued for.
#[derive(Debug, Clone, Copy)]
pub enum Grant {
    AuthorizationCode,
    Otp,
    RefreshToken,
    ClientCredentials,
}

impl Grant {
    fn as_str(self) -> &'static str {
        match self {
            Self::AuthorizationCode => "authorization_code",
            Self::Otp => "otp",
            Self::RefreshToken => "refresh_token",
            Self::ClientCredentials => "client_credentials",
        }
    }
}

pub fn tokens_issued(grant: Grant) {
    counter!("latchkey_tokens_issued_total", "grant" => grant.as_str()).increment(1);
}

/// A refresh token already rotated out was presented: its family is revoked.
pub fn refresh_token_reused() {
    counter!("latchkey_refresh_token_reuse_total").increment(1);
}

pub fn rate_limited(kind: RateLimitKind) {
    counter!("latchkey_rate_limited_total", "kind" => kind.as_str()).increment(1);
}

/// A request for a link's landing page (or a press of its button), with whether it showed a
/// scanner's signs on arrival.
pub fn link_viewed(method: ViewMethod, likely_scanner: bool) {
    let class = if likely_scanner { "likely_scanner" } else { "unclassified" };
    counter!("latchkey_link_views_total", "method" => method.as_str(), "class" => class).increment(1);
}

/// A view that could not be queued for recording (the queue was full): counted, not kept.
pub fn link_view_dropped() {
    counter!("latchkey_link_views_dropped_total").increment(1);
}
