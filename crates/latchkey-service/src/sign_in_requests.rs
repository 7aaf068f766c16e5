//! Sign-in requests that the application's back end confirms itself. The e-mail's link goes
//! to the application's own address, carrying the request's id and a token; the application
//! hands both back here. Latchkey issues no authorization code and no tokens for such a
//! request: the answer says whether the user proved control of the address, once, and a token
//! presented again is reported as a replay rather than confirmed twice.

use crate::metrics;
use crate::registrations::{check_context_data, client_differs};
use crate::{NewMagicLink, Refusal, Resource, Service, ServiceError};
use latchkey_core::challenge::{ChallengeLifetime, ClientHint, IssuedChallenge, Purpose};
use latchkey_core::id::UserId;
use latchkey_core::secret::HashPurpose;
use latchkey_core::{Application, Challenge, EmailAddress, RedirectUri, User};
use latchkey_mail::Locale;
use latchkey_store::TokenOutcome;
use std::collections::BTreeMap;

/// Which registered user a sign-in request is for.
#[derive(Debug, Clone)]
pub enum UserKey {
    Id(UserId),
    Email(EmailAddress),
}

/// The names of the link's query parameters that carry the request's id and its token: the
/// application reads them from its own address, so it decides what they are called.
#[derive(Debug, Clone, Copy)]
pub struct LinkParams {
    pub id: &'static str,
    pub token: &'static str,
}

/// Asking a registered user to confirm a sign-in by e-mail.
#[derive(Debug, Clone)]
pub struct NewSignInRequest {
    pub user: UserKey,
    /// Where the e-mail's link goes; must be on the application's redirect URIs.
    pub redirect_uri: RedirectUri,
    pub link_params: LinkParams,
    /// `None`: the application's link lifetime.
    pub expires_in: Option<ChallengeLifetime>,
    /// Handed back at validation; within [`latchkey_core::user::within_bounds`].
    pub context_data: BTreeMap<String, String>,
    pub client_ip: Option<ClientHint>,
    pub user_agent: Option<ClientHint>,
    pub locale: Option<Locale>,
}

/// A sign-in request and the user it is for.
#[derive(Debug)]
pub struct SignInRequest {
    pub challenge: Challenge,
    pub user: User,
}

/// The application's back end handing back what its address received.
#[derive(Debug, Clone)]
pub struct SignInCheck {
    /// The request's id as the link carried it.
    pub id: String,
    pub token: String,
    /// What the client is now, compared with what was given at the start.
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
}

/// A validation that answers whether it came first or repeated one already made.
#[derive(Debug)]
pub enum Validated<T> {
    /// This validation spent the token.
    First(T),
    /// The token was spent by an earlier validation; nothing happened now.
    Replay(T),
}

/// The longest token looked up; anything longer cannot be ours.
const MAX_TOKEN_LEN: usize = 128;

impl Service {
    pub async fn create_sign_in_request(
        &self,
        app: &Application,
        cmd: NewSignInRequest,
    ) -> Result<SignInRequest, ServiceError> {
        check_context_data(&cmd.context_data)?;
        let user = match &cmd.user {
            UserKey::Id(id) => self.store.user(id).await?,
            UserKey::Email(email) => self.store.user_by_email(email).await?,
        };
        let user = user.ok_or(Refusal::NotFound(Resource::User))?;
        let sign_in = NewMagicLink {
            redirect_uri: Some(cmd.redirect_uri),
            expires_in: cmd.expires_in,
            create_user: false,
            client_ip: cmd.client_ip,
            user_agent: cmd.user_agent,
            locale: cmd.locale,
            ..NewMagicLink::new(user.email.clone())
        };
        let mut req = self.challenge_request(app, &sign_in)?;
        req.context_data = cmd.context_data;
        let now = self.clock.now();
        // The application confirms the sign-in through its own address: the e-mail carries the
        // link alone, no code to type anywhere.
        let IssuedChallenge { challenge, link_token, .. } = Challenge::issue(app, req, &self.key, now);
        let params = cmd.link_params;
        let link = challenge
            .redirect_uri
            .with_params([(params.id, challenge.id.as_str()), (params.token, link_token.expose())]);
        let user_locale = user.locale.as_deref().and_then(|l| Locale::parse(l).ok());
        let mail = self.sign_in_mail(
            app,
            &challenge,
            &link,
            None,
            (sign_in.locale.as_ref(), user_locale.as_ref()),
            None,
        );
        self.store_challenge(app, &challenge, Some(mail), now).await?;
        Ok(SignInRequest { challenge, user })
    }

    /// Spends the request's token, once; the same token again is a replay.
    pub async fn validate_sign_in_request(
        &self,
        app: &Application,
        check: SignInCheck,
    ) -> Result<Validated<SignInRequest>, ServiceError> {
        let not_found = || Refusal::NotFound(Resource::SignInRequest);
        if check.token.len() > MAX_TOKEN_LEN {
            return Err(not_found().into());
        }
        let hash = self.key.hash(HashPurpose::LinkToken, &check.token);
        let found = self
            .store
            .challenge_by_link(&hash)
            .await?
            .filter(|c| c.app_id == app.id && c.purpose == Purpose::Login && c.id.as_str() == check.id)
            .ok_or_else(not_found)?;
        if client_differs(&found, check.client_ip.as_deref(), check.user_agent.as_deref()) {
            return Err(Refusal::ClientMismatch.into());
        }
        let now = self.clock.now();
        let (challenge, first) =
            match self.store.consume_by_token(Purpose::Login, &hash, &app.id, now).await? {
                TokenOutcome::Consumed(challenge) => {
                    metrics::challenge_consumed(Purpose::Login, app, metrics::Consumed::Token);
                    (*challenge, true)
                }
                TokenOutcome::Gone(latchkey_core::ChallengeStatus::Consumed) => (found, false),
                TokenOutcome::Gone(status) => {
                    if status == latchkey_core::ChallengeStatus::Expired {
                        metrics::challenge_expired(Purpose::Login, app);
                    }
                    return Err(Refusal::NoLongerValid { what: Resource::SignInRequest, status }.into());
                }
                TokenOutcome::NotFound => return Err(not_found().into()),
            };
        let user =
            self.store.user_by_email(&challenge.email).await?.ok_or(Refusal::NotFound(Resource::User))?;
        let request = SignInRequest { challenge, user };
        Ok(if first { Validated::First(request) } else { Validated::Replay(request) })
    }
}
