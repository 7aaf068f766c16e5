//! The page a link opens. Looking never consumes (scanners look); only the person's POST does.

use crate::metrics;
use crate::{Service, ServiceError};
use latchkey_core::application::Binding;
use latchkey_core::challenge::{NewAuthorizationCode, Purpose};
use latchkey_core::event::Event;
use latchkey_core::hosted::HostedRequest;
use latchkey_core::link_view::{LinkView, ViewMethod};
use latchkey_core::secret::HashPurpose;
use latchkey_core::{Application, ChallengeStatus, EmailAddress};
use latchkey_store::ConsumeOutcome;

#[derive(Debug)]
pub struct LandingView {
    pub product: String,
    pub email: EmailAddress,
    /// The sign-in is bound to the device that asked (PKCE): say how to finish elsewhere.
    pub bound: bool,
}

/// The browser pressing the button, as far as the request tells.
#[derive(Debug, Default)]
pub struct Browser {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

#[derive(Debug)]
pub enum Landing {
    /// The link works: show the button.
    Ready(LandingView),
    /// The link was used, has expired or was revoked; `back` is the application's address.
    Gone {
        status: ChallengeStatus,
        product: String,
        back: Option<String>,
    },
    NotFound,
    /// Opened in another browser than the one that asked, and the application refuses that:
    /// the person finishes with the code on the original device.
    OtherDevice {
        product: String,
    },
}

/// What a link's page shows: a hosted sign-in's, or the ordinary one.
#[derive(Debug)]
pub enum OpenedLink {
    Hosted(Box<crate::HostedLanding>),
    Ordinary(Landing),
}

/// The longest link token looked up; anything longer cannot be ours.
const MAX_TOKEN_LEN: usize = 128;

/// A sign-in link, looked up once: its challenge, its application and, when the link is a
/// hosted sign-in's, the request waiting for it.
#[derive(Debug, Clone)]
pub struct FoundLink {
    pub(crate) challenge: latchkey_core::Challenge,
    pub(crate) app: Application,
    pub(crate) hosted: Option<HostedRequest>,
}

impl Service {
    /// The sign-in link of `token`, with one read of the store. Registration and verification
    /// tokens are not found here: they belong to the application that asked for them.
    pub async fn find_link(&self, token: &str) -> Result<Option<FoundLink>, ServiceError> {
        if token.len() > MAX_TOKEN_LEN {
            return Ok(None);
        }
        let hash = self.key.hash(HashPurpose::LinkToken, token);
        let found = self.store.challenge_and_hosted_request_by_link(&hash).await?;
        let Some((challenge, hosted)) = found.filter(|(c, _)| c.purpose == Purpose::Login) else {
            return Ok(None);
        };
        let Some(app) = self.application_by_id(&challenge.app_id).await? else { return Ok(None) };
        Ok(Some(FoundLink { challenge, app, hosted }))
    }

    fn record_view(&self, challenge: &latchkey_core::Challenge, method: ViewMethod, browser: &Browser) {
        let view = LinkView::new(
            challenge.id.clone(),
            self.clock.now(),
            method,
            browser.ip.clone(),
            browser.user_agent.as_deref(),
        );
        self.record_link_view(view);
    }

    fn gone(status: ChallengeStatus, app: &Application, challenge: &latchkey_core::Challenge) -> Landing {
        let uri = challenge.redirect_uri.as_str();
        let back = url::Url::parse(uri).ok().map(|u| u.origin().ascii_serialization());
        Landing::Gone { status, product: app.product_name().to_owned(), back }
    }

    /// What a link's page shows, with one lookup of the link: a hosted sign-in's page (as the
    /// browser holding `cookie` sees it), or the ordinary landing page, whose request (`method`:
    /// GET or HEAD) is recorded as a view.
    pub async fn open_link(
        &self,
        token: &str,
        method: ViewMethod,
        browser: &Browser,
        cookie: Option<&str>,
    ) -> Result<OpenedLink, ServiceError> {
        let Some(FoundLink { challenge, app, hosted }) = self.find_link(token).await? else {
            return Ok(OpenedLink::Ordinary(Landing::NotFound));
        };
        if let Some(request) = hosted {
            return Ok(OpenedLink::Hosted(Box::new(self.hosted_landing_of(challenge, request, app, cookie))));
        }
        self.record_view(&challenge, method, browser);
        Ok(OpenedLink::Ordinary(self.landing_of(challenge, &app)))
    }

    fn landing_of(&self, challenge: latchkey_core::Challenge, app: &Application) -> Landing {
        match challenge.status_at(self.clock.now()) {
            ChallengeStatus::Pending => Landing::Ready(LandingView {
                product: app.product_name().to_owned(),
                bound: challenge.code_challenge.is_some(),
                email: challenge.email,
            }),
            status => Self::gone(status, app, &challenge),
        }
    }

    /// Consumes the challenge and returns where to send the browser: the application's
    /// redirect URI with the authorization code and state.
    pub async fn consume_link(
        &self,
        FoundLink { challenge, app, .. }: FoundLink,
        browser: &Browser,
    ) -> Result<Result<String, Landing>, ServiceError> {
        self.record_view(&challenge, ViewMethod::Post, browser);
        let now = self.clock.now();
        if app.settings.binding == Binding::Strict && !same_browser(&challenge, browser) {
            let event = Event::other_browser(&app.id, &challenge.id, now);
            self.store.insert_event(&event).await?;
            return Ok(Err(Landing::OtherDevice { product: app.product_name().to_owned() }));
        }
        let code = NewAuthorizationCode::generate(&app, &self.key, now);
        let hash = &challenge.link_hash;
        Ok(match self.store.consume_link(hash, &code, now).await? {
            ConsumeOutcome::Consumed { challenge: consumed, .. } => {
                metrics::challenge_consumed(consumed.purpose, &app, metrics::Consumed::Link);
                let mut params = vec![("code", code.code.expose())];
                if let Some(state) = consumed.state.as_deref() {
                    params.push(("state", state));
                }
                Ok(consumed.redirect_uri.with_params(params))
            }
            ConsumeOutcome::Gone(status) => {
                if status == ChallengeStatus::Expired {
                    metrics::challenge_expired(challenge.purpose, &app);
                }
                Err(Self::gone(status, &app, &challenge))
            }
            ConsumeOutcome::NotFound => Err(Landing::NotFound),
        })
    }
}

/// Whether the browser matches what the caller said of the one that asked (what it said only).
fn same_browser(challenge: &latchkey_core::Challenge, browser: &Browser) -> bool {
    let matches = |expected: &Option<String>, seen: &Option<String>| match expected {
        Some(e) => seen.as_deref() == Some(e.as_str()),
        None => true,
    };
    matches(&challenge.client_ip, &browser.ip) && matches(&challenge.user_agent, &browser.user_agent)
}
