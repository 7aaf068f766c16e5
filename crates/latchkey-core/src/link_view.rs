//! Who opened a sign-in link, and whether it was likely a mail scanner rather than the person.
//!
//! Looking at a link never consumes it, so scanners cost nothing; recording their views lets an
//! operator see which mail filters open links, how soon after delivery, and whether anyone
//! pressed the button afterwards. The rules are deliberately simple and documented (see
//! `docs/operations.md`): a view is a *likely scanner* when it shows at least one [`Sign`].

use crate::id::ChallengeId;
use serde::Serialize;
use time::{Duration, OffsetDateTime};

/// How many views of one link are kept in full; later ones are only counted, so that a flood
/// of requests for one link stays bounded in storage.
pub const KEPT_VIEWS_PER_LINK: u32 = 20;
/// The longest user agent kept.
pub const MAX_USER_AGENT_LEN: usize = 256;
/// A view this soon after the mail server accepted the e-mail was not a person reading it.
pub const TOO_SOON: Duration = Duration::seconds(5);

/// Lower-case fragments of the user agents of link scanners and previewers.
pub const SCANNER_AGENTS: &[&str] = &[
    "safelinks",
    "bingpreview",
    "proofpoint",
    "mimecast",
    "barracuda",
    "symantec",
    "trendmicro",
    "fortiguard",
    "sophos",
    "forcepoint",
    "cisco",
    "googleimageproxy",
    "skypeuripreview",
    "slackbot",
    "discordbot",
    "facebookexternalhit",
    "whatsapp",
    "headlesschrome",
    "python-requests",
    "go-http-client",
    "curl/",
    "wget/",
    "okhttp",
    "java/",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ViewMethod {
    Get,
    Head,
    /// The person's press of the button (the landing page's form).
    Post,
}

impl ViewMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Head => "HEAD",
            Self::Post => "POST",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "GET" => Some(Self::Get),
            "HEAD" => Some(Self::Head),
            "POST" => Some(Self::Post),
            _ => None,
        }
    }
}

/// One request for a link's landing page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkView {
    pub challenge_id: ChallengeId,
    pub at: OffsetDateTime,
    pub method: ViewMethod,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

impl LinkView {
    pub fn new(
        challenge_id: ChallengeId,
        at: OffsetDateTime,
        method: ViewMethod,
        ip: Option<String>,
        user_agent: Option<&str>,
    ) -> Self {
        let user_agent = user_agent.map(|ua| cut(ua, MAX_USER_AGENT_LEN).to_owned());
        Self { challenge_id, at, method, ip, user_agent }
    }
}

/// At most `max` bytes of `value`, cut at a character boundary.
fn cut(value: &str, max: usize) -> &str {
    let mut end = value.len().min(max);
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    &value[..end]
}

/// What a store keeps of a link's views: the first [`KEPT_VIEWS_PER_LINK`] in full, how many
/// there were in all, and when the e-mail was delivered and the button first pressed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkViews {
    pub views: Vec<LinkView>,
    pub total: u64,
    pub delivered_at: Option<OffsetDateTime>,
    pub pressed_at: Option<OffsetDateTime>,
}

/// Why a view looks like a scanner's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Sign {
    /// People's browsers never ask for a page's headers only.
    Head,
    /// Within [`TOO_SOON`] of delivery (or before it).
    TooSoon,
    /// A user agent of [`SCANNER_AGENTS`], or none at all.
    ScannerAgent,
    /// The link is no longer open and nobody pressed its button after this view.
    NeverPressed,
}

impl Sign {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Head => "head",
            Self::TooSoon => "too_soon",
            Self::ScannerAgent => "scanner_agent",
            Self::NeverPressed => "never_pressed",
        }
    }
}

/// A view with what can be said of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassifiedView {
    pub view: LinkView,
    /// Time from delivery to this view, when the e-mail was delivered by this server.
    pub since_delivery: Option<Duration>,
    /// Whether the button was pressed after this view.
    pub followed_by_press: bool,
    pub signs: Vec<Sign>,
}

impl ClassifiedView {
    pub fn likely_scanner(&self) -> bool {
        !self.signs.is_empty()
    }
}

/// The signs a view shows at the moment it happens (all but [`Sign::NeverPressed`], which only
/// time tells).
pub fn signs_on_arrival(view: &LinkView, delivered_at: Option<OffsetDateTime>) -> Vec<Sign> {
    let mut signs = Vec::new();
    if view.method == ViewMethod::Head {
        signs.push(Sign::Head);
    }
    if view.method != ViewMethod::Post && delivered_at.is_some_and(|d| view.at - d < TOO_SOON) {
        signs.push(Sign::TooSoon);
    }
    if view.method != ViewMethod::Post && is_scanner_agent(view.user_agent.as_deref()) {
        signs.push(Sign::ScannerAgent);
    }
    signs
}

fn is_scanner_agent(user_agent: Option<&str>) -> bool {
    let Some(ua) = user_agent.filter(|ua| !ua.trim().is_empty()) else { return true };
    let ua = ua.to_ascii_lowercase();
    SCANNER_AGENTS.iter().any(|fragment| ua.contains(fragment))
}

/// Every kept view (presses excluded) with its signs. `still_open` is whether the link can still
/// be pressed: while it can, a view not followed by a press proves nothing yet.
pub fn classify(views: &LinkViews, still_open: bool) -> Vec<ClassifiedView> {
    views
        .views
        .iter()
        .filter(|v| v.method != ViewMethod::Post)
        .map(|view| {
            let followed_by_press = views.pressed_at.is_some_and(|p| p >= view.at);
            let mut signs = signs_on_arrival(view, views.delivered_at);
            if !followed_by_press && !still_open {
                signs.push(Sign::NeverPressed);
            }
            ClassifiedView {
                view: view.clone(),
                since_delivery: views.delivered_at.map(|d| view.at - d),
                followed_by_press,
                signs,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2026-12-01 12:00 UTC);
    const BROWSER: &str =
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Version/17.5 Safari/605.1.15";

    fn view(method: ViewMethod, after: Duration, ua: Option<&str>) -> LinkView {
        let id = ChallengeId::generate(T0);
        LinkView::new(id, T0 + after, method, Some("192.0.2.1".into()), ua)
    }

    #[test]
    fn a_head_an_early_get_and_a_scanner_agent_are_signs_a_late_browser_get_is_not() {
        let delivered = Some(T0);
        assert_eq!(
            signs_on_arrival(&view(ViewMethod::Head, Duration::minutes(1), Some(BROWSER)), delivered),
            [Sign::Head]
        );
        assert_eq!(
            signs_on_arrival(&view(ViewMethod::Get, Duration::seconds(2), Some(BROWSER)), delivered),
            [Sign::TooSoon]
        );
        let safelinks = "Mozilla/5.0 (compatible; SafeLinks/1.0)";
        assert_eq!(
            signs_on_arrival(&view(ViewMethod::Get, Duration::minutes(1), Some(safelinks)), delivered),
            [Sign::ScannerAgent]
        );
        assert_eq!(
            signs_on_arrival(&view(ViewMethod::Get, Duration::minutes(1), None), delivered),
            [Sign::ScannerAgent]
        );
        assert!(
            signs_on_arrival(&view(ViewMethod::Get, Duration::minutes(1), Some(BROWSER)), delivered)
                .is_empty()
        );
        // Not delivered by us (the application sent it): no timing sign.
        assert!(
            signs_on_arrival(&view(ViewMethod::Get, Duration::seconds(1), Some(BROWSER)), None).is_empty()
        );
    }

    #[test]
    fn a_view_followed_by_a_press_is_followed_and_one_never_pressed_counts_once_the_link_is_closed() {
        let early = view(ViewMethod::Get, Duration::seconds(1), Some(BROWSER));
        let person = view(ViewMethod::Get, Duration::minutes(2), Some(BROWSER));
        let press = view(ViewMethod::Post, Duration::minutes(2) + Duration::seconds(3), Some(BROWSER));
        let after = view(ViewMethod::Get, Duration::minutes(5), Some(BROWSER));
        let views = LinkViews {
            views: vec![early, person, press.clone(), after],
            total: 4,
            delivered_at: Some(T0),
            pressed_at: Some(press.at),
        };
        let classified = classify(&views, false);
        assert_eq!(classified.len(), 3, "the press itself is not a view");
        assert!(classified[0].followed_by_press && classified[0].signs == [Sign::TooSoon]);
        assert!(classified[1].followed_by_press && !classified[1].likely_scanner());
        assert_eq!(classified[1].since_delivery, Some(Duration::minutes(2)));
        assert!(!classified[2].followed_by_press);
        assert_eq!(classified[2].signs, [Sign::NeverPressed]);
        assert!(classify(&views, true)[2].signs.is_empty(), "an open link may still be pressed");
    }

    #[test]
    fn a_long_user_agent_is_cut() {
        let long = "x".repeat(1000);
        assert_eq!(
            view(ViewMethod::Get, Duration::ZERO, Some(&long)).user_agent.unwrap().len(),
            MAX_USER_AGENT_LEN
        );
    }
}
