//! The hosted sign-in (OpenID Connect authorization endpoint): a request that waits in one
//! browser for its e-mail challenge to be used, and the browser session it leaves behind.
//!
//! A request is bound to the browser that started it by a random cookie (stored only as a
//! keyed hash) and moves through its statuses by conditional updates only, so that each end
//! state is reached once.

use crate::challenge::AuthMethod;
use crate::id::{AppId, BrowserSessionId, ChallengeId, HostedRequestId, UserId};
use crate::secret::random_below;
use time::OffsetDateTime;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostedStatus {
    /// The e-mail is sent; the browser waits for its link or code.
    Waiting,
    /// Another device approved: the waiting browser may continue, once.
    Approved,
    /// The waiting browser went on to the application with a code.
    Completed,
    /// Another device said the sign-in was not theirs.
    Declined,
    /// A wrong number was picked on another device.
    Cancelled,
}

impl HostedStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Waiting => "waiting",
            Self::Approved => "approved",
            Self::Completed => "completed",
            Self::Declined => "declined",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "waiting" => Self::Waiting,
            "approved" => Self::Approved,
            "completed" => Self::Completed,
            "declined" => Self::Declined,
            "cancelled" => Self::Cancelled,
            _ => return None,
        })
    }
}

/// A hosted sign-in request, from the e-mail page on.
#[derive(Debug, Clone)]
pub struct HostedRequest {
    pub id: HostedRequestId,
    pub app_id: AppId,
    /// The e-mail challenge; its redirect URI, state, nonce and PKCE challenge are the request's.
    pub challenge_id: ChallengeId,
    /// Keyed hash of the browser cookie.
    pub browser_hash: Vec<u8>,
    /// The number the waiting page shows (10 to 99).
    pub match_number: u8,
    /// The three numbers the approval page offers, the match among them.
    pub choices: [u8; 3],
    pub status: HostedStatus,
    /// The requesting browser, as the approval page describes it.
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// The locale the pages were shown in.
    pub locale: Option<String>,
    /// The authorization request's query, to start again from after a decline.
    pub restart: Option<String>,
    pub user_id: Option<UserId>,
    pub auth_method: Option<AuthMethod>,
    pub auth_time: Option<OffsetDateTime>,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

/// Who signed in, and how, when a request moves on.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub user_id: UserId,
    pub auth_method: AuthMethod,
    pub auth_time: OffsetDateTime,
}

/// The two-digit number to match and the three numbers offered, in random order.
pub fn number_matching() -> (u8, [u8; 3]) {
    let pick = || 10 + random_below(90) as u8;
    let number = pick();
    let mut choices = [number, 0, 0];
    for i in 1..3 {
        loop {
            let n = pick();
            if !choices[..i].contains(&n) {
                choices[i] = n;
                break;
            }
        }
    }
    // Fisher–Yates, so that the place of the right number says nothing.
    for i in (1..3).rev() {
        let j = random_below(i as u32 + 1) as usize;
        choices.swap(i, j);
    }
    (number, choices)
}

/// A browser's sign-in at the deployment, honoured by every application's authorization
/// request until it expires or is revoked.
#[derive(Debug, Clone)]
pub struct BrowserSession {
    pub id: BrowserSessionId,
    /// Keyed hash of the session cookie.
    pub token_hash: Vec<u8>,
    pub user_id: UserId,
    /// The challenge whose e-mail sign-in started it.
    pub challenge_id: ChallengeId,
    pub auth_method: AuthMethod,
    pub auth_time: OffsetDateTime,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    pub revoked_at: Option<OffsetDateTime>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_two_digits_distinct_and_include_the_match() {
        for _ in 0..200 {
            let (n, c) = number_matching();
            assert!((10..=99).contains(&n));
            assert!(c.contains(&n));
            assert!(c[0] != c[1] && c[1] != c[2] && c[0] != c[2]);
            assert!(c.iter().all(|x| (10..=99).contains(x)));
        }
    }

    #[test]
    fn statuses_round_trip() {
        for s in [
            HostedStatus::Waiting,
            HostedStatus::Approved,
            HostedStatus::Completed,
            HostedStatus::Declined,
            HostedStatus::Cancelled,
        ] {
            assert_eq!(HostedStatus::parse(s.as_str()), Some(s));
        }
    }
}
