//! Applications (OAuth clients) and the rules that depend only on their settings.

use crate::id::AppId;
use crate::redirect::RedirectUri;
use crate::signing::SigningAlg;
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

#[derive(Debug, Clone)]
pub struct Application {
    pub id: AppId,
    /// The OAuth `client_id`; the same string as `id`, so that either names the application.
    pub client_id: String,
    pub name: String,
    /// A public client has no secret and must use PKCE.
    pub public: bool,
    pub redirect_uris: Vec<RedirectUri>,
    pub default_redirect_uri: Option<RedirectUri>,
    pub settings: AppSettings,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

/// Everything about an application that no query filters on; stored as one JSON document.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct AppSettings {
    pub registration_redirect_uris: Vec<String>,
    /// Where `GET /oauth/logout` may send the browser after ending its session (exact match).
    pub post_logout_redirect_uris: Vec<String>,
    pub signing_alg: SigningAlg,
    pub branding: Branding,
    pub default_locale: Option<String>,
    pub lifetimes: Lifetimes,
    pub rate_limits: crate::rate_limit::RateLimits,
    /// Refuse (`strict`) or allow a link opened in another browser than the one that asked.
    pub binding: Binding,
    /// What a registration's validation does when the client's IP address or user agent
    /// differs from the one given at the start.
    pub registration_mismatch: MismatchPolicy,
    /// The application's own e-mail templates, by `purpose.locale` (`login.fr`, `registration.de-CH`).
    pub templates: std::collections::BTreeMap<String, TemplateOverride>,
    /// The application's own hosted sign-in pages, by [`HostedPage`] name; checked when set,
    /// rendered sandboxed.
    pub pages: std::collections::BTreeMap<String, String>,
}

/// A hosted sign-in page an application can replace: the frame around every page (`layout`),
/// or the content of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostedPage {
    Layout,
    Email,
    Wait,
    SameBrowser,
    Approve,
    Message,
}

impl HostedPage {
    pub const ALL: [HostedPage; 6] = [
        HostedPage::Layout,
        HostedPage::Email,
        HostedPage::Wait,
        HostedPage::SameBrowser,
        HostedPage::Approve,
        HostedPage::Message,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            HostedPage::Layout => "layout",
            HostedPage::Email => "email",
            HostedPage::Wait => "wait",
            HostedPage::SameBrowser => "same_browser",
            HostedPage::Approve => "approve",
            HostedPage::Message => "message",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == name)
    }
}

/// An application's version of a built-in e-mail template; a part left out is the built-in one.
/// Checked (and test-rendered) when set; rendered sandboxed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TemplateOverride {
    pub subject: Option<String>,
    pub text: Option<String>,
    pub html: Option<String>,
}

/// What to do when a link is opened in another browser than the one the sign-in started in
/// (a different IP address or user agent than the caller gave).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Binding {
    /// Let the link work anywhere.
    #[default]
    Off,
    /// Refuse it, and tell the person to type the code on the device they started on.
    Strict,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum MismatchPolicy {
    /// Refuse the validation.
    #[default]
    Refuse,
    /// Validate, and say in the answer that the client differed.
    Report,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct Branding {
    pub product_name: Option<String>,
    pub logo_url: Option<String>,
    pub primary_color: Option<String>,
    pub sender_name: Option<String>,
    pub sender_email: Option<String>,
}

/// Per-application overrides of the default lifetimes, in seconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct Lifetimes {
    pub link: Option<u32>,
    pub otp: Option<u32>,
    pub authorization_code: Option<u32>,
    pub access_token: Option<u32>,
    pub id_token: Option<u32>,
    pub refresh_token: Option<u32>,
}

/// Bounds every lifetime setting must respect, in seconds (minimum, maximum).
pub mod limits {
    pub const LINK: (u32, u32) = (60, 86_400);
    pub const OTP: (u32, u32) = (60, 86_400);
    pub const AUTHORIZATION_CODE: (u32, u32) = (30, 600);
    pub const ACCESS_TOKEN: (u32, u32) = (60, 86_400);
    pub const ID_TOKEN: (u32, u32) = (60, 86_400);
    pub const REFRESH_TOKEN: (u32, u32) = (3_600, 365 * 86_400);
}

impl Lifetimes {
    pub fn link(&self) -> Duration {
        secs(self.link, 15 * 60)
    }
    pub fn otp(&self) -> Duration {
        secs(self.otp, 10 * 60)
    }
    pub fn authorization_code(&self) -> Duration {
        secs(self.authorization_code, 5 * 60)
    }
    pub fn access_token(&self) -> Duration {
        secs(self.access_token, 3600)
    }
    pub fn id_token(&self) -> Duration {
        secs(self.id_token, 3600)
    }
    pub fn refresh_token(&self) -> Duration {
        secs(self.refresh_token, 30 * 86_400)
    }

    /// The first setting outside its bounds, by name.
    pub fn out_of_bounds(&self) -> Option<&'static str> {
        let checks = [
            ("link", self.link, limits::LINK),
            ("otp", self.otp, limits::OTP),
            ("authorization_code", self.authorization_code, limits::AUTHORIZATION_CODE),
            ("access_token", self.access_token, limits::ACCESS_TOKEN),
            ("id_token", self.id_token, limits::ID_TOKEN),
            ("refresh_token", self.refresh_token, limits::REFRESH_TOKEN),
        ];
        checks
            .into_iter()
            .find(|(_, v, (lo, hi))| v.is_some_and(|v| v < *lo || v > *hi))
            .map(|(name, _, _)| name)
    }
}

fn secs(value: Option<u32>, default: i64) -> Duration {
    Duration::seconds(value.map(i64::from).unwrap_or(default))
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedirectError {
    #[error("redirect_uri is not on the application's allow list")]
    NotAllowed,
    #[error("no redirect_uri was given and the application has no default")]
    NoDefault,
}

impl Application {
    /// The redirect target for a sign-in: the requested URI if it is on the allow list
    /// (exact match), else the application's default.
    pub fn resolve_redirect(&self, requested: Option<&RedirectUri>) -> Result<RedirectUri, RedirectError> {
        match requested {
            Some(uri) if self.redirect_uris.contains(uri) => Ok(uri.clone()),
            Some(_) => Err(RedirectError::NotAllowed),
            None => self.default_redirect().cloned().ok_or(RedirectError::NoDefault),
        }
    }

    /// The explicit default, else the only allowed URI.
    pub fn default_redirect(&self) -> Option<&RedirectUri> {
        let only = match self.redirect_uris.as_slice() {
            [only] => Some(only),
            _ => None,
        };
        self.default_redirect_uri.as_ref().or(only)
    }

    pub fn product_name(&self) -> &str {
        self.settings.branding.product_name.as_deref().unwrap_or(&self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(uris: &[&str], default: Option<&str>) -> Application {
        let now = OffsetDateTime::UNIX_EPOCH;
        Application {
            id: AppId::generate(now),
            client_id: "c".into(),
            name: "Demo".into(),
            public: false,
            redirect_uris: uris.iter().map(|u| RedirectUri::parse(u).unwrap()).collect(),
            default_redirect_uri: default.map(|u| RedirectUri::parse(u).unwrap()),
            settings: AppSettings::default(),
            created_at: now,
            updated_at: now,
        }
    }

    #[test]
    fn redirect_is_exact_match_or_default() {
        let a = app(&["https://a.example/cb", "https://a.example/other"], Some("https://a.example/cb"));
        let other = RedirectUri::parse("https://a.example/other").unwrap();
        assert_eq!(a.resolve_redirect(Some(&other)).unwrap(), other);
        assert_eq!(a.resolve_redirect(None).unwrap().as_str(), "https://a.example/cb");
        for bad in ["https://a.example/cb/x", "https://a.example/cb?x=1", "https://evil.example/cb"] {
            let bad = RedirectUri::parse(bad).unwrap();
            assert_eq!(a.resolve_redirect(Some(&bad)), Err(RedirectError::NotAllowed));
        }
        let two = app(&["https://a.example/1", "https://a.example/2"], None);
        assert_eq!(two.resolve_redirect(None), Err(RedirectError::NoDefault));
        let one = app(&["https://a.example/1"], None);
        assert_eq!(one.resolve_redirect(None).unwrap().as_str(), "https://a.example/1");
    }

    #[test]
    fn lifetimes_have_defaults_and_bounds() {
        let l = Lifetimes::default();
        assert_eq!(l.link(), Duration::minutes(15));
        assert_eq!(l.authorization_code(), Duration::minutes(5));
        assert_eq!(
            Lifetimes { authorization_code: Some(601), ..l }.out_of_bounds(),
            Some("authorization_code")
        );
        assert_eq!(Lifetimes { link: Some(300), ..l }.out_of_bounds(), None);
    }
}
