//! Rate limits: fixed windows counted in the store, so they hold across restarts and instances.

use crate::email::EmailAddress;
use crate::id::AppId;
use serde::{Deserialize, Serialize};
use time::Duration;

/// One counter to increment: at most `limit` hits per `window` for `key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimit {
    pub key: String,
    pub window: Duration,
    pub limit: u32,
}

impl RateLimit {
    /// What the limit counts, from its key (`email:…`, `ip:…`, `app:…`).
    pub fn kind(&self) -> RateLimitKind {
        match self.key.split(':').next() {
            Some("email") => RateLimitKind::Email,
            Some("ip") => RateLimitKind::Ip,
            Some("app") => RateLimitKind::Application,
            _ => RateLimitKind::Other,
        }
    }
}

/// What a limit counts: requests for one address, from one client IP, or of one application.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateLimitKind {
    Email,
    Ip,
    Application,
    Other,
}

impl RateLimitKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::Ip => "ip",
            Self::Application => "application",
            Self::Other => "other",
        }
    }
}

/// A refusal: how long until the window that refused ends, and which kind of limit refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimited {
    pub retry_after: Duration,
    pub kind: RateLimitKind,
}

/// Per-application settings; `None` uses the default (and `Some(0)` turns a limit off).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct RateLimits {
    pub per_email_per_minute: Option<u32>,
    pub per_email_per_hour: Option<u32>,
    pub per_ip_per_minute: Option<u32>,
    /// No default: off unless set.
    pub per_application_per_minute: Option<u32>,
}

impl RateLimits {
    pub const EMAIL_PER_MINUTE: u32 = 3;
    pub const EMAIL_PER_HOUR: u32 = 20;
    pub const IP_PER_MINUTE: u32 = 30;

    /// The counters one sign-in request increments.
    pub fn for_request(&self, app: &AppId, email: &EmailAddress, client_ip: Option<&str>) -> Vec<RateLimit> {
        let minute = Duration::minutes(1);
        let mut out = Vec::with_capacity(4);
        let mut push = |key: String, window: Duration, limit: Option<u32>, default: Option<u32>| {
            if let Some(limit) = limit.or(default).filter(|l| *l > 0) {
                out.push(RateLimit { key, window, limit });
            }
        };
        push(
            format!("email:{app}:{email}:m"),
            minute,
            self.per_email_per_minute,
            Some(Self::EMAIL_PER_MINUTE),
        );
        push(
            format!("email:{app}:{email}:h"),
            Duration::hours(1),
            self.per_email_per_hour,
            Some(Self::EMAIL_PER_HOUR),
        );
        if let Some(ip) = client_ip {
            push(format!("ip:{app}:{ip}:m"), minute, self.per_ip_per_minute, Some(Self::IP_PER_MINUTE));
        }
        push(format!("app:{app}:m"), minute, self.per_application_per_minute, None);
        out
    }
}

/// The start of the fixed window containing `now_ms`, and the milliseconds left in it.
pub fn window(now_ms: i64, window: Duration) -> (i64, i64) {
    let size = window.whole_milliseconds().max(1) as i64;
    let start = now_ms - now_ms.rem_euclid(size);
    (start, start + size - now_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_apply_and_zero_turns_off() {
        let app = AppId::generate(time::OffsetDateTime::UNIX_EPOCH);
        let email = EmailAddress::parse("a@example.com").unwrap();
        let limits = RateLimits::default().for_request(&app, &email, Some("192.0.2.1"));
        assert_eq!(limits.iter().map(|l| l.limit).collect::<Vec<_>>(), [3, 20, 30]);
        let off = RateLimits {
            per_email_per_minute: Some(0),
            per_application_per_minute: Some(100),
            ..Default::default()
        };
        let limits = off.for_request(&app, &email, None);
        assert_eq!(limits.iter().map(|l| l.limit).collect::<Vec<_>>(), [20, 100]);
    }

    #[test]
    fn windows_are_aligned() {
        assert_eq!(window(125_000, Duration::minutes(1)), (120_000, 55_000));
        assert_eq!(window(120_000, Duration::minutes(1)), (120_000, 60_000));
    }
}
