//! Refresh tokens: opaque, rotating, one family per sign-in. Presenting a token that was
//! already rotated out means it leaked: the whole family is revoked.

use crate::challenge::AuthMethod;
use crate::id::{AppId, FamilyId, OrgId, RefreshTokenId, UserId};
use crate::secret::{HashPurpose, MasterKey, OpaqueToken};
use time::OffsetDateTime;

#[derive(Debug, Clone)]
pub struct RefreshToken {
    pub id: RefreshTokenId,
    pub token_hash: Vec<u8>,
    pub family_id: FamilyId,
    pub app_id: AppId,
    pub user_id: UserId,
    pub auth_method: AuthMethod,
    pub auth_time: OffsetDateTime,
    pub scope: String,
    pub org_id: Option<OrgId>,
    pub created_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
    pub rotated_at: Option<OffsetDateTime>,
    pub revoked_at: Option<OffsetDateTime>,
}

/// The prefix that makes a refresh token recognisable (and distinguishable from an access token).
pub const REFRESH_PREFIX: &str = "lkr_";

impl RefreshToken {
    /// A new token; `family` is `None` for the first token of a sign-in.
    #[allow(clippy::too_many_arguments)]
    pub fn issue(
        key: &MasterKey,
        family: Option<FamilyId>,
        app_id: AppId,
        user_id: UserId,
        auth_method: AuthMethod,
        auth_time: OffsetDateTime,
        scope: &str,
        lifetime: time::Duration,
        now: OffsetDateTime,
    ) -> (Self, String) {
        let plain = format!("{REFRESH_PREFIX}{}", OpaqueToken::generate().expose());
        let token = Self {
            id: RefreshTokenId::generate(now),
            token_hash: key.hash(HashPurpose::RefreshToken, &plain),
            family_id: family.unwrap_or_else(|| FamilyId::generate(now)),
            app_id,
            user_id,
            auth_method,
            auth_time,
            scope: scope.to_owned(),
            org_id: None,
            created_at: now,
            expires_at: now + lifetime,
            rotated_at: None,
            revoked_at: None,
        };
        (token, plain)
    }

    pub fn is_active(&self, now: OffsetDateTime) -> bool {
        self.rotated_at.is_none() && self.revoked_at.is_none() && now < self.expires_at
    }
}
