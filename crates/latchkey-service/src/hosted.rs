//! The hosted sign-in: an OpenID Connect authorization request answered by Latchkey's own
//! pages. The request waits in the browser that started it (bound by a cookie) for its e-mail
//! challenge to be used there (link or code), or approved from another device by number
//! matching; a browser session then signs that browser in to any application of the deployment.
//!
//! The challenge is the single-use gate: whoever consumes it (link, code, approval) is the one
//! that moves the request on; every later move is a conditional update of the request.

use crate::landing::FoundLink;
use crate::magic_links::NewMagicLink;
use crate::{Refusal, Service, ServiceError};
use latchkey_core::challenge::{AuthMethod, AuthorizationCode, NewAuthorizationCode, Purpose, StateText};
use latchkey_core::hosted::{BrowserSession, HostedRequest, HostedStatus, SignedIn, number_matching};
use latchkey_core::id::{BrowserSessionId, HostedRequestId};
use latchkey_core::pkce::CodeChallenge;
use latchkey_core::secret::HashPurpose;
use latchkey_core::{Application, Challenge, ChallengeStatus, EmailAddress, OpaqueToken, Otp, RedirectUri};
use latchkey_mail::Locale;
use latchkey_store::{ConsumeOutcome, OtpOutcome};
use time::{Duration, OffsetDateTime};

/// The default lifetime of a browser session.
pub const DEFAULT_SESSION_LIFETIME: Duration = Duration::days(7);

/// An authorization request whose client and redirect URI are known good, every value parsed.
#[derive(Debug, Clone)]
pub struct Authorization {
    pub redirect_uri: RedirectUri,
    pub state: Option<StateText>,
    pub nonce: Option<StateText>,
    pub code_challenge: Option<CodeChallenge>,
    /// `prompt=login`: a fresh e-mail sign-in even with a session.
    pub fresh: bool,
    /// Seconds since the e-mail sign-in beyond which a session does not count.
    pub max_age: Option<i64>,
}

/// Where the browser goes next, and the session cookie it gets on the way.
#[derive(Debug)]
pub struct Finished {
    pub location: String,
    /// A new session's cookie value; `None` when the browser already had its session.
    pub session: Option<NewSessionCookie>,
}

#[derive(Debug)]
pub struct NewSessionCookie {
    pub value: String,
    pub max_age: Duration,
}

/// A waiting request as its browser sees it.
#[derive(Debug, Clone)]
pub struct WaitingView {
    pub request: HostedRequest,
    pub product: String,
    pub app: Application,
    pub challenge: Challenge,
}

impl WaitingView {
    pub fn email(&self) -> &EmailAddress {
        &self.challenge.email
    }
}

/// What a link of a hosted sign-in shows.
#[derive(Debug)]
pub enum HostedLanding {
    /// Opened in the browser that waits: one button finishes there.
    SameBrowser { product: String, email: EmailAddress, app: Application },
    /// Opened elsewhere: approve the waiting browser's sign-in by picking its number, or decline.
    Approve { product: String, email: EmailAddress, app: Application, request: Box<HostedRequest> },
    /// Already approved, declined, cancelled, used or expired.
    Gone { status: GoneReason, product: String, app: Application },
}

/// Why a hosted request's page can no longer act.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GoneReason {
    Used,
    Approved,
    Declined,
    Cancelled,
    Expired,
}

/// What the other device chose on the approval page.
#[derive(Debug, Clone, Copy)]
pub enum Decision {
    Pick(u8),
    Decline,
}

/// What a decision did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decided {
    Approved,
    Declined,
    /// A wrong number: the request is cancelled.
    Cancelled,
    /// Someone else decided first, or the request ended.
    TooLate(GoneReason),
}

/// What the waiting browser's code form did.
#[derive(Debug)]
pub enum CodeOutcome {
    Finished(Finished),
    Wrong,
    Gone(GoneReason),
}

impl Service {
    /// The application of an authorization request and its redirect URI, both exactly known,
    /// or the refusal that must be an error page rather than a redirect.
    pub async fn authorization_client(
        &self,
        client_id: &str,
        redirect_uri: Option<&str>,
    ) -> Result<(Application, RedirectUri), ServiceError> {
        let app = match latchkey_core::id::AppId::parse(client_id) {
            Some(id) => self.application_by_id(&id).await?,
            None => None,
        };
        let app = app.ok_or(Refusal::NotFound(crate::Resource::Application))?;
        let given = match redirect_uri {
            Some(u) => Some(RedirectUri::parse(u).map_err(|_| Refusal::RedirectNotAllowed)?),
            None => None,
        };
        let uri = app.resolve_redirect(given.as_ref()).map_err(Refusal::from)?;
        Ok((app, uri))
    }

    /// The session of a browser's cookie, when it is active and fresh enough for `authz`.
    pub async fn usable_session(
        &self,
        cookie: Option<&str>,
        authz: &Authorization,
    ) -> Result<Option<BrowserSession>, ServiceError> {
        let Some(cookie) = cookie.filter(|c| c.len() <= 128) else { return Ok(None) };
        let now = self.clock.now();
        let hash = self.key.hash(HashPurpose::SessionCookie, cookie);
        let Some(session) = self.store.browser_session(&hash, now).await? else { return Ok(None) };
        if authz.fresh {
            return Ok(None);
        }
        if let Some(max_age) = authz.max_age
            && (now - session.auth_time).whole_seconds() > max_age
        {
            return Ok(None);
        }
        Ok(Some(session))
    }

    /// Signs in with an existing browser session: a code for the session's user, no e-mail.
    pub async fn sign_in_with_session(
        &self,
        app: &Application,
        authz: &Authorization,
        session: &BrowserSession,
    ) -> Result<String, ServiceError> {
        let now = self.clock.now();
        let new = NewAuthorizationCode::generate(app, &self.key, now);
        let code = AuthorizationCode {
            id: new.id.clone(),
            code_hash: new.code_hash.clone(),
            app_id: app.id.clone(),
            challenge_id: session.challenge_id.clone(),
            user_id: session.user_id.clone(),
            redirect_uri: authz.redirect_uri.clone(),
            redirect_uri_given: true,
            code_challenge: authz.code_challenge.clone(),
            nonce: authz.nonce.as_ref().map(|n| n.as_str().to_owned()),
            auth_method: session.auth_method,
            auth_time: session.auth_time,
            org_id: None,
            code_is_credential: false,
            expires_at: new.expires_at,
        };
        self.store.insert_authorization_code(&code).await?;
        Ok(self.success_location(
            &authz.redirect_uri,
            new.code.expose(),
            authz.state.as_ref().map(|s| s.as_str()),
        ))
    }

    /// `redirect_uri?code=…&state=…&iss=…` (RFC 9207).
    fn success_location(&self, uri: &RedirectUri, code: &str, state: Option<&str>) -> String {
        let mut params = vec![("code", code)];
        if let Some(state) = state {
            params.push(("state", state));
        }
        params.push(("iss", self.issuer()));
        uri.with_params(params)
    }

    /// Starts the e-mail sign-in of an authorization request: the ordinary sign-in e-mail
    /// (same limits, same answer whether or not the address has an account), bound to this
    /// request and to the browser whose cookie is `browser`.
    #[allow(clippy::too_many_arguments)]
    pub async fn start_hosted_sign_in(
        &self,
        app: &Application,
        authz: &Authorization,
        email: EmailAddress,
        browser: &str,
        ip: Option<String>,
        user_agent: Option<String>,
        locale: Option<Locale>,
        restart: Option<String>,
    ) -> Result<HostedRequestId, ServiceError> {
        let mut cmd = NewMagicLink::new(email);
        cmd.redirect_uri = Some(authz.redirect_uri.clone());
        cmd.state = authz.state.clone();
        cmd.nonce = authz.nonce.clone();
        cmd.code_challenge = authz.code_challenge.clone();
        cmd.locale = locale.clone();
        // The e-mail is written held, and released once the request is stored: a link
        // mailed without its request would work as an ordinary link, outside the hosted flow.
        let created = self.prepare_magic_link(app, cmd).await?;
        let now = self.clock.now();
        let (match_number, choices) = number_matching();
        let request = HostedRequest {
            id: HostedRequestId::generate(now),
            app_id: app.id.clone(),
            challenge_id: created.id,
            browser_hash: self.key.hash(HashPurpose::BrowserCookie, browser),
            match_number,
            choices,
            status: HostedStatus::Waiting,
            ip: ip.map(|s| s.chars().take(64).collect()),
            user_agent: user_agent.map(|s| s.chars().take(512).collect()),
            locale: locale.map(|l| l.to_string()),
            restart,
            user_id: None,
            auth_method: None,
            auth_time: None,
            created_at: now,
            expires_at: created.expires_at,
        };
        self.store.insert_hosted_request(&request).await?;
        self.release_magic_link_mail(app, &request.challenge_id).await?;
        Ok(request.id)
    }

    fn holds(&self, request: &HostedRequest, browser: Option<&str>) -> bool {
        browser.is_some_and(|b| {
            b.len() <= 128 && self.key.verify(HashPurpose::BrowserCookie, b, &request.browser_hash)
        })
    }

    /// A request as the browser holding its cookie sees it; `None` for anyone else.
    pub async fn waiting(
        &self,
        id: &str,
        browser: Option<&str>,
    ) -> Result<Option<WaitingView>, ServiceError> {
        let Some(id) = HostedRequestId::parse(id) else { return Ok(None) };
        let Some(request) = self.store.hosted_request(&id).await? else { return Ok(None) };
        if !self.holds(&request, browser) {
            return Ok(None);
        }
        let Some(app) = self.application_by_id(&request.app_id).await? else { return Ok(None) };
        let Some(record) = self.store.challenge(&app.id, &request.challenge_id).await? else {
            return Ok(None);
        };
        Ok(Some(WaitingView {
            product: app.product_name().to_owned(),
            challenge: record.challenge,
            app,
            request,
        }))
    }

    /// Whether a request can no longer go on, and why (from its status and its challenge's).
    pub fn gone_reason(&self, request: &HostedRequest, challenge: Option<&Challenge>) -> Option<GoneReason> {
        let now = self.clock.now();
        match request.status {
            HostedStatus::Completed => return Some(GoneReason::Used),
            HostedStatus::Declined => return Some(GoneReason::Declined),
            HostedStatus::Cancelled => return Some(GoneReason::Cancelled),
            HostedStatus::Approved => return Some(GoneReason::Approved),
            HostedStatus::Waiting => {}
        }
        if request.expires_at <= now {
            return Some(GoneReason::Expired);
        }
        match challenge.map(|c| c.status_at(now)) {
            Some(ChallengeStatus::Pending) => None,
            Some(ChallengeStatus::Consumed) => Some(GoneReason::Used),
            Some(ChallengeStatus::Revoked) => Some(GoneReason::Cancelled),
            _ => Some(GoneReason::Expired),
        }
    }

    /// After an approval elsewhere: the waiting browser goes on to the application, once.
    pub async fn continue_approved(&self, view: &WaitingView) -> Result<Option<Finished>, ServiceError> {
        let now = self.clock.now();
        let moved = self
            .store
            .advance_hosted_request(
                &view.request.id,
                HostedStatus::Approved,
                HostedStatus::Completed,
                None,
                now,
            )
            .await?;
        let Some(request) = moved else { return Ok(None) };
        let (Some(user_id), Some(method), Some(auth_time)) =
            (request.user_id, request.auth_method, request.auth_time)
        else {
            return Err(ServiceError::Internal("an approved request without its sign-in".into()));
        };
        let signed_in = SignedIn { user_id, auth_method: method, auth_time };
        self.finish(&view.app, &view.challenge, &signed_in, now).await.map(Some)
    }

    /// Issues the code for the waiting browser and opens its session.
    async fn finish(
        &self,
        app: &Application,
        challenge: &Challenge,
        signed_in: &SignedIn,
        now: OffsetDateTime,
    ) -> Result<Finished, ServiceError> {
        let new = NewAuthorizationCode::generate(app, &self.key, now);
        let mut code = new.issued_for(challenge, &signed_in.user_id, now);
        code.auth_method = signed_in.auth_method;
        code.auth_time = signed_in.auth_time;
        self.store.insert_authorization_code(&code).await?;
        let session = self.open_session(challenge, signed_in, now).await?;
        Ok(Finished {
            location: self.success_location(
                &challenge.redirect_uri,
                new.code.expose(),
                challenge.state.as_deref(),
            ),
            session: Some(session),
        })
    }

    async fn open_session(
        &self,
        challenge: &Challenge,
        signed_in: &SignedIn,
        now: OffsetDateTime,
    ) -> Result<NewSessionCookie, ServiceError> {
        let token = OpaqueToken::generate();
        let session = BrowserSession {
            id: BrowserSessionId::generate(now),
            token_hash: self.key.hash(HashPurpose::SessionCookie, token.expose()),
            user_id: signed_in.user_id.clone(),
            challenge_id: challenge.id.clone(),
            auth_method: signed_in.auth_method,
            auth_time: signed_in.auth_time,
            created_at: now,
            expires_at: now + self.session_lifetime,
            revoked_at: None,
        };
        self.store.insert_browser_session(&session).await?;
        Ok(NewSessionCookie { value: token.expose().to_owned(), max_age: self.session_lifetime })
    }

    /// The 6-digit code typed on the waiting page.
    pub async fn submit_hosted_code(
        &self,
        view: &WaitingView,
        otp: &str,
    ) -> Result<CodeOutcome, ServiceError> {
        let now = self.clock.now();
        let challenge = &view.challenge;
        if let Some(reason) = self.gone_reason(&view.request, Some(challenge)) {
            return Ok(CodeOutcome::Gone(reason));
        }
        let Some(otp) = Otp::parse(otp) else { return Ok(CodeOutcome::Wrong) };
        let hash =
            self.key.hash(HashPurpose::Otp, &latchkey_core::challenge::otp_subject(&challenge.id, &otp));
        match self.store.consume_by_otp(&challenge.id, &hash, crate::tokens::MAX_OTP_ATTEMPTS, now).await? {
            OtpOutcome::Consumed { challenge, user } => {
                crate::metrics::challenge_consumed(
                    challenge.purpose,
                    &view.app,
                    crate::metrics::Consumed::Code,
                );
                let signed_in = SignedIn { user_id: user.id, auth_method: AuthMethod::Otp, auth_time: now };
                self.complete_waiting(view, &challenge, &signed_in, now).await
            }
            OtpOutcome::Wrong { attempts_left } => {
                crate::metrics::otp_failed(&view.app, attempts_left == 0);
                Ok(CodeOutcome::Wrong)
            }
            OtpOutcome::Gone => Ok(CodeOutcome::Gone(GoneReason::Used)),
        }
    }

    async fn complete_waiting(
        &self,
        view: &WaitingView,
        challenge: &Challenge,
        signed_in: &SignedIn,
        now: OffsetDateTime,
    ) -> Result<CodeOutcome, ServiceError> {
        let moved = self
            .store
            .advance_hosted_request(
                &view.request.id,
                HostedStatus::Waiting,
                HostedStatus::Completed,
                Some(signed_in),
                now,
            )
            .await?;
        if moved.is_none() {
            return Ok(CodeOutcome::Gone(GoneReason::Used));
        }
        Ok(CodeOutcome::Finished(self.finish(&view.app, challenge, signed_in, now).await?))
    }

    /// What a hosted sign-in's link shows; `None` when the link is not one (the ordinary
    /// landing page answers). Looking changes nothing.
    pub fn hosted_landing(&self, link: &FoundLink, browser: Option<&str>) -> Option<HostedLanding> {
        let request = link.hosted.clone()?;
        Some(self.hosted_landing_of(link.challenge.clone(), request, link.app.clone(), browser))
    }

    /// What the link of `challenge`, which belongs to `request`, shows.
    pub(crate) fn hosted_landing_of(
        &self,
        challenge: Challenge,
        request: HostedRequest,
        app: Application,
        browser: Option<&str>,
    ) -> HostedLanding {
        let product = app.product_name().to_owned();
        if let Some(status) = self.gone_reason(&request, Some(&challenge)) {
            return HostedLanding::Gone { status, product, app };
        }
        if self.holds(&request, browser) {
            HostedLanding::SameBrowser { product, email: challenge.email, app }
        } else {
            HostedLanding::Approve { product, email: challenge.email, app, request: Box::new(request) }
        }
    }

    /// The landing page's button in the browser that waits: consumes the link and finishes.
    pub async fn hosted_consume_link(
        &self,
        link: &FoundLink,
        browser: Option<&str>,
    ) -> Result<Option<Result<Finished, GoneReason>>, ServiceError> {
        let FoundLink { challenge, app, hosted: Some(request) } = link else { return Ok(None) };
        if !self.holds(request, browser) {
            return Ok(Some(Err(GoneReason::Cancelled)));
        }
        if let Some(reason) = self.gone_reason(request, Some(challenge)) {
            return Ok(Some(Err(reason)));
        }
        let now = self.clock.now();
        let new = NewAuthorizationCode::generate(app, &self.key, now);
        match self.store.consume_link(&challenge.link_hash, &new, now).await? {
            ConsumeOutcome::Consumed { challenge: consumed, user, .. } => {
                crate::metrics::challenge_consumed(consumed.purpose, app, crate::metrics::Consumed::Link);
                let moved = self
                    .store
                    .advance_hosted_request(
                        &request.id,
                        HostedStatus::Waiting,
                        HostedStatus::Completed,
                        Some(&SignedIn {
                            user_id: user.id.clone(),
                            auth_method: AuthMethod::Link,
                            auth_time: now,
                        }),
                        now,
                    )
                    .await?;
                if moved.is_none() {
                    return Ok(Some(Err(GoneReason::Used)));
                }
                let signed_in = SignedIn { user_id: user.id, auth_method: AuthMethod::Link, auth_time: now };
                let session = self.open_session(&consumed, &signed_in, now).await?;
                Ok(Some(Ok(Finished {
                    location: self.success_location(
                        &consumed.redirect_uri,
                        new.code.expose(),
                        consumed.state.as_deref(),
                    ),
                    session: Some(session),
                })))
            }
            ConsumeOutcome::Gone(_) | ConsumeOutcome::NotFound => Ok(Some(Err(GoneReason::Used))),
        }
    }

    /// The other device's answer on the approval page. The right number consumes the
    /// challenge (the single-use gate) and approves the request; a wrong one or a decline
    /// revokes the challenge and ends the request. The approving device gets nothing.
    pub async fn decide(
        &self,
        link: &FoundLink,
        decision: Decision,
    ) -> Result<Option<Decided>, ServiceError> {
        let FoundLink { challenge, app, hosted: Some(request) } = link else { return Ok(None) };
        if let Some(reason) = self.gone_reason(request, Some(challenge)) {
            return Ok(Some(Decided::TooLate(reason)));
        }
        let now = self.clock.now();
        let (to, outcome) = match decision {
            Decision::Pick(n) if n == request.match_number => {
                // The code this issues is never shown; the waiting browser gets its own.
                let unused = NewAuthorizationCode::generate(app, &self.key, now);
                return Ok(Some(match self.store.consume_link(&challenge.link_hash, &unused, now).await? {
                    ConsumeOutcome::Consumed { user, .. } => {
                        crate::metrics::challenge_consumed(
                            Purpose::Login,
                            app,
                            crate::metrics::Consumed::Link,
                        );
                        let signed_in =
                            SignedIn { user_id: user.id, auth_method: AuthMethod::Link, auth_time: now };
                        let moved = self
                            .store
                            .advance_hosted_request(
                                &request.id,
                                HostedStatus::Waiting,
                                HostedStatus::Approved,
                                Some(&signed_in),
                                now,
                            )
                            .await?;
                        if moved.is_some() { Decided::Approved } else { Decided::TooLate(GoneReason::Used) }
                    }
                    _ => Decided::TooLate(GoneReason::Used),
                }));
            }
            Decision::Pick(_) => (HostedStatus::Cancelled, Decided::Cancelled),
            Decision::Decline => (HostedStatus::Declined, Decided::Declined),
        };
        if !self.store.revoke_challenge(&app.id, &challenge.id, now).await? {
            return Ok(Some(Decided::TooLate(GoneReason::Used)));
        }
        let moved =
            self.store.advance_hosted_request(&request.id, HostedStatus::Waiting, to, None, now).await?;
        Ok(Some(if moved.is_some() { outcome } else { Decided::TooLate(GoneReason::Used) }))
    }

    /// Ends the browser session of a cookie (RP-Initiated Logout); `true` when one was active.
    pub async fn end_session(&self, cookie: Option<&str>) -> Result<bool, ServiceError> {
        let Some(cookie) = cookie.filter(|c| c.len() <= 128) else { return Ok(false) };
        let hash = self.key.hash(HashPurpose::SessionCookie, cookie);
        Ok(self.store.revoke_browser_session(&hash, self.clock.now()).await?)
    }

    /// Where a logout may send the browser: `uri` exactly on the application's
    /// `post_logout_redirect_uris`. The application is named by `client_id`, or by the `aud`
    /// of an id_token this server signed.
    pub async fn logout_target(
        &self,
        client_id: Option<&str>,
        id_token_hint: Option<&str>,
        uri: &str,
    ) -> Result<Option<String>, ServiceError> {
        let hinted = id_token_hint.and_then(|t| self.keys.verify_id_token_audience(t, &self.issuer));
        let Some(client) = client_id.map(str::to_owned).or(hinted) else { return Ok(None) };
        let Some(id) = latchkey_core::id::AppId::parse(&client) else { return Ok(None) };
        let Some(app) = self.application_by_id(&id).await? else { return Ok(None) };
        Ok(app.settings.post_logout_redirect_uris.iter().any(|u| u == uri).then(|| uri.to_owned()))
    }

    /// The user's browser sessions (admin API).
    pub async fn user_browser_sessions(
        &self,
        id: &latchkey_core::id::UserId,
    ) -> Result<Vec<BrowserSession>, ServiceError> {
        let user = self.user(id).await?;
        Ok(self.store.user_browser_sessions(&user.id, self.clock.now()).await?)
    }
}
