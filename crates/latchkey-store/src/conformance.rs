//! The conformance suite: every rule of the [`Store`] contract, run against each
//! implementation. An implementation's tests invoke [`conformance_tests!`] with an async
//! function that returns a fresh, migrated, empty store, and optionally attributes for every
//! case (`#[ignore = "…"]` for a database a plain `cargo test` does not have: the cases are then
//! reported as ignored, and fail when run without it, never pass without having run).

use crate::{
    ClientSecret, ConsumeOutcome, DeliveryStatus, MailFate, NewOutboxMessage, OtpOutcome, RecordedView,
    RegistrationOutcome, RotateOutcome, SentMail, Store, StoredDkimKey, StoredSigningKey, TokenOutcome,
};
use crate::{OutboxBacklog, Suppression};
use latchkey_core::application::AppSettings;
use latchkey_core::challenge::{AuthMethod, otp_subject};
use latchkey_core::challenge::{ChallengeRequest, NewAuthorizationCode, Purpose};
use latchkey_core::event::{Event, EventKind};
use latchkey_core::id::OrgId;
use latchkey_core::id::{AppId, ChallengeId, OutboxId, SecretId};
use latchkey_core::organization::Organization;
use latchkey_core::rate_limit::{RateLimit, RateLimitKind, RateLimited};
use latchkey_core::refresh::RefreshToken;
use latchkey_core::secret::HashPurpose;
use latchkey_core::signing::SigningAlg;
use latchkey_core::{Application, Challenge, ChallengeStatus, EmailAddress, MasterKey, RedirectUri};
use latchkey_core::{Otp, User};
use std::any::Any;
use std::sync::Arc;
use time::{Duration, OffsetDateTime};

/// A store for one test, and whatever must live as long as it (a temporary directory, a
/// database to drop).
pub struct TestStore {
    pub store: Arc<dyn Store>,
    pub guard: Box<dyn Any + Send + Sync>,
}

/// Generates one `#[tokio::test]` per conformance case for the given store factory, each
/// with the attributes given after it.
#[macro_export]
macro_rules! conformance_tests {
    ($fresh:path $(, #[$attr:meta])* $(,)?) => {
        $crate::conformance_tests!(@cases $fresh; [$(#[$attr])*];
            applications_round_trip,
            a_migrated_database_has_no_pending_migration,
            secrets_find_their_application,
            challenge_is_written_with_its_mail,
            link_consumes_once_and_creates_a_verified_user,
            unusable_links_say_why,
            concurrent_link_consumption_has_one_winner,
            authorization_code_redeems_once_for_its_own_application,
            a_code_is_its_own_credential_only_when_its_challenge_says_so,
            a_code_keeps_its_redirect_uri_and_whether_it_was_given,
            concurrent_code_redemption_has_one_winner,
            outbox_leases_retries_and_settles,
            deliveries_are_recorded_in_one_batch,
            outbox_leases_renewed_in_flight_outlive_the_others,
            outbox_backlog_counts_what_waits,
            held_mail_waits_until_released_once,
            link_views_are_counted_kept_up_to_a_bound_and_purged_with_their_challenge,
            signing_keys_round_trip,
            a_dkim_key_is_stored_once_per_selector,
            a_suppressed_address_gets_its_mail_written_suppressed_until_lifted_or_over,
            deleting_an_application_removes_what_it_owns,
            rate_limits_count_per_window_and_refuse_without_writing,
            codes_consume_once_count_wrong_guesses_and_race_the_link,
            refresh_tokens_rotate_and_reuse_revokes_the_family,
            users_round_trip_and_paginate,
            events_record_each_step_in_order,
            leases_are_exclusive_until_they_expire,
            purge_removes_only_what_expired,
            signing_keys_retire_and_are_deleted_later,
            tokens_consume_only_their_own_purpose_and_application,
            organizations_round_trip_and_own_their_domains,
            a_sign_in_for_an_organization_makes_a_member_and_carries_its_id,
            every_challenge_transition_writes_its_events,
            a_registration_creates_its_user_and_consumes_once,
            a_taken_address_leaves_the_registration_pending_and_writes_nothing,
            concurrent_registrations_have_one_winner,
            hosted_requests_move_once_from_status_to_status,
            browser_sessions_are_found_listed_and_revoked,
        );
    };
    (@cases $fresh:path; $attrs:tt; $($case:ident),* $(,)?) => {
        $( $crate::conformance_tests!(@case $fresh; $attrs; $case); )*
    };
    (@case $fresh:path; [$(#[$attr:meta])*]; $case:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        $(#[$attr])*
        async fn $case() {
            let t = $fresh().await;
            $crate::conformance::$case(t.store.clone()).await;
            drop(t);
        }
    };
}

pub fn key() -> MasterKey {
    MasterKey::from_secret("conformance-suite-master-secret-0123456789").expect("valid secret")
}

pub fn t0() -> OffsetDateTime {
    // Whole seconds: stores keep second precision.
    OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("valid time")
}

pub fn application(name: &str) -> Application {
    let uri = RedirectUri::parse("https://app.example/callback").expect("valid uri");
    Application {
        id: AppId::generate(t0()),
        client_id: String::new(),
        name: name.to_owned(),
        public: false,
        redirect_uris: vec![uri.clone(), RedirectUri::parse("https://app.example/other").expect("uri")],
        default_redirect_uri: Some(uri),
        settings: AppSettings::default(),
        created_at: t0(),
        updated_at: t0(),
    }
    .with_client_id()
}

trait WithClientId {
    fn with_client_id(self) -> Self;
}

impl WithClientId for Application {
    fn with_client_id(mut self) -> Self {
        self.client_id = self.id.to_string();
        self
    }
}

/// A challenge and its link token; see [`challenge_with_otp`] for the code too.
pub fn challenge(app: &Application, email: &str, now: OffsetDateTime) -> (Challenge, String) {
    let (c, token, _) = challenge_with_otp(app, email, now);
    (c, token)
}

pub fn challenge_with_otp(app: &Application, email: &str, now: OffsetDateTime) -> (Challenge, String, Otp) {
    let req = ChallengeRequest {
        purpose: Purpose::Login,
        email: EmailAddress::parse(email).expect("valid email"),
        redirect_uri: app.default_redirect().expect("default").clone(),
        redirect_uri_given: false,
        state: Some("st".into()),
        nonce: Some("n-1".into()),
        expires_in: None,
        code_challenge: None,
        client_ip: Some("192.0.2.1".into()),
        user_agent: Some("test agent".into()),
        create_user: true,
        org_id: None,
        context_data: [("plan".to_owned(), "pro".to_owned())].into(),
        created_by: None,
        code_is_credential: false,
    };
    let issued = Challenge::issue(app, req, &key(), now);
    (issued.challenge, issued.link_token.expose().to_owned(), issued.otp)
}

fn link_hash(token: &str) -> Vec<u8> {
    key().hash(HashPurpose::LinkToken, token)
}

fn mail_for(app: &Application, c: &Challenge) -> NewOutboxMessage {
    NewOutboxMessage {
        id: OutboxId::generate(c.created_at),
        app_id: Some(app.id.clone()),
        challenge_id: Some(c.id.clone()),
        sealed: b"sealed body".to_vec(),
        created_at: c.created_at,
        held: false,
    }
}

async fn insert(store: &dyn Store, c: &Challenge, mail: Option<&NewOutboxMessage>) {
    store.create_challenge(c, mail, &[], c.created_at).await.expect("stored").expect("no limits to exceed");
}

/// An application of its own with `count` messages queued at [`t0`]; their ids, oldest first.
pub async fn queued_messages(store: &dyn Store, count: usize) -> Vec<OutboxId> {
    let app = app_in(store, "Queued").await;
    let mut ids = Vec::new();
    for i in 0..count {
        let (c, _) = challenge(&app, &format!("queued{i}@example.com"), t0());
        let mail = mail_for(&app, &c);
        ids.push(mail.id.clone());
        insert(store, &c, Some(&mail)).await;
    }
    ids
}

async fn app_in(store: &dyn Store, name: &str) -> Application {
    let app = application(name);
    store.insert_application(&app, None).await.expect("insert application");
    app
}

pub async fn a_migrated_database_has_no_pending_migration(store: Arc<dyn Store>) {
    assert_eq!(store.pending_migrations().await.unwrap(), 0);
    store.migrate().await.unwrap();
    assert_eq!(store.pending_migrations().await.unwrap(), 0, "migrating again changes nothing");
}

pub async fn applications_round_trip(store: Arc<dyn Store>) {
    let mut app = application("First");
    app.settings.branding.product_name = Some("Product".into());
    app.settings.lifetimes.link = Some(600);
    store.insert_application(&app, None).await.unwrap();
    let got = store.application(&app.id).await.unwrap().expect("stored");
    assert_eq!(got.name, "First");
    assert_eq!(got.client_id, app.client_id);
    assert_eq!(got.redirect_uris, app.redirect_uris);
    assert_eq!(got.default_redirect_uri, app.default_redirect_uri);
    assert_eq!(got.settings, app.settings);
    assert_eq!(got.created_at, t0());

    let second = app_in(&*store, "Second").await;
    let all = store.list_applications().await.unwrap();
    assert_eq!(all.iter().map(|a| a.id.clone()).collect::<Vec<_>>(), vec![app.id.clone(), second.id.clone()]);

    app.name = "Renamed".into();
    app.public = true;
    app.redirect_uris.pop();
    app.updated_at = t0() + Duration::seconds(5);
    assert!(store.update_application(&app).await.unwrap());
    let got = store.application(&app.id).await.unwrap().unwrap();
    assert_eq!((got.name.as_str(), got.public, got.redirect_uris.len()), ("Renamed", true, 1));
    assert_eq!(got.updated_at, t0() + Duration::seconds(5));

    assert!(store.delete_application(&app.id).await.unwrap());
    assert!(store.application(&app.id).await.unwrap().is_none());
    assert!(!store.delete_application(&app.id).await.unwrap());
    assert!(!store.update_application(&app).await.unwrap());
}

pub async fn secrets_find_their_application(store: Arc<dyn Store>) {
    let app = application("Secretive");
    let first = ClientSecret {
        id: SecretId::generate(t0()),
        app_id: app.id.clone(),
        hash: vec![1; 32],
        created_at: t0(),
    };
    store.insert_application(&app, Some(&first)).await.unwrap();
    let second = ClientSecret {
        id: SecretId::generate(t0()),
        app_id: app.id.clone(),
        hash: vec![2; 32],
        created_at: t0(),
    };
    store.insert_client_secret(&second).await.unwrap();

    for hash in [[1u8; 32], [2u8; 32]] {
        let found = store.application_by_secret_hash(&hash).await.unwrap().expect("found by secret");
        assert_eq!(found.id, app.id);
    }
    assert!(store.application_by_secret_hash(&[3; 32]).await.unwrap().is_none());
    assert_eq!(store.client_secrets(&app.id).await.unwrap().len(), 2);

    let other = app_in(&*store, "Other").await;
    assert!(!store.delete_client_secret(&other.id, &first.id).await.unwrap(), "a foreign secret");
    assert!(store.delete_client_secret(&app.id, &first.id).await.unwrap());
    assert!(store.application_by_secret_hash(&[1; 32]).await.unwrap().is_none());
    assert_eq!(store.client_secrets(&app.id).await.unwrap().len(), 1);

    let duplicate = ClientSecret {
        id: SecretId::generate(t0()),
        app_id: other.id.clone(),
        hash: vec![2; 32],
        created_at: t0(),
    };
    assert!(store.insert_client_secret(&duplicate).await.is_err(), "secret hashes are unique");
}

pub async fn challenge_is_written_with_its_mail(store: Arc<dyn Store>) {
    let app = app_in(&*store, "Mail").await;
    let (c, token) = challenge(&app, "Someone@Example.com", t0());
    insert(&*store, &c, Some(&mail_for(&app, &c))).await;
    let rec = store.challenge(&app.id, &c.id).await.unwrap().expect("stored");
    assert_eq!(rec.challenge.email.as_str(), "someone@example.com");
    assert_eq!(rec.challenge.status, ChallengeStatus::Pending);
    assert_eq!(rec.challenge.state.as_deref(), Some("st"));
    assert_eq!(rec.challenge.expires_at, c.expires_at);
    assert_eq!(rec.challenge.otp_hash, c.otp_hash);
    assert_eq!(rec.challenge.context_data.get("plan").map(String::as_str), Some("pro"));
    let delivery = rec.delivery.expect("mail queued with the challenge");
    assert_eq!((delivery.status, delivery.attempts), (DeliveryStatus::Queued, 0));

    let by_link = store.challenge_by_link(&link_hash(&token)).await.unwrap().expect("by link");
    assert_eq!(by_link.id, c.id);
    assert!(store.challenge_by_link(&link_hash("nope")).await.unwrap().is_none());

    let other = app_in(&*store, "Other").await;
    assert!(store.challenge(&other.id, &c.id).await.unwrap().is_none(), "tenants are isolated");

    let (silent, _) = challenge(&app, "quiet@example.com", t0());
    insert(&*store, &silent, None).await;
    assert!(store.challenge(&app.id, &silent.id).await.unwrap().unwrap().delivery.is_none());
}

pub async fn link_consumes_once_and_creates_a_verified_user(store: Arc<dyn Store>) {
    let app = app_in(&*store, "Consume").await;
    let (c, token) = challenge(&app, "first@example.com", t0());
    insert(&*store, &c, None).await;
    let now = t0() + Duration::seconds(30);
    let code = NewAuthorizationCode::generate(&app, &key(), now);
    let ConsumeOutcome::Consumed { challenge: consumed, user, code: issued } =
        store.consume_link(&link_hash(&token), &code, now).await.unwrap()
    else {
        panic!("the first consumption succeeds");
    };
    assert_eq!(consumed.id, c.id);
    assert_eq!(consumed.status, ChallengeStatus::Consumed);
    assert_eq!(consumed.consumed_at, Some(now));
    assert!(user.email_verified);
    assert_eq!(user.email.as_str(), "first@example.com");
    assert_eq!(issued.user_id, user.id);
    assert_eq!(issued.redirect_uri, c.redirect_uri);
    assert_eq!(issued.nonce.as_deref(), Some("n-1"));
    assert_eq!(issued.auth_time, now);
    assert_eq!(store.user_by_email(&user.email).await.unwrap().unwrap().id, user.id);

    let again = NewAuthorizationCode::generate(&app, &key(), now);
    assert!(matches!(
        store.consume_link(&link_hash(&token), &again, now).await.unwrap(),
        ConsumeOutcome::Gone(ChallengeStatus::Consumed)
    ));

    // A second sign-in of the same address reuses the user.
    let (c2, token2) = challenge(&app, "FIRST@example.com", now);
    insert(&*store, &c2, None).await;
    let code2 = NewAuthorizationCode::generate(&app, &key(), now);
    let ConsumeOutcome::Consumed { user: user2, .. } =
        store.consume_link(&link_hash(&token2), &code2, now).await.unwrap()
    else {
        panic!("second challenge consumes");
    };
    assert_eq!(user2.id, user.id);
    assert_eq!(store.user(&user.id).await.unwrap().unwrap().last_sign_in_at, Some(now));
}

pub async fn unusable_links_say_why(store: Arc<dyn Store>) {
    let app = app_in(&*store, "Unusable").await;
    let code = |at| NewAuthorizationCode::generate(&app, &key(), at);

    let (expired, expired_token) = challenge(&app, "late@example.com", t0());
    insert(&*store, &expired, None).await;
    let late = expired.expires_at;
    assert!(matches!(
        store.consume_link(&link_hash(&expired_token), &code(late), late).await.unwrap(),
        ConsumeOutcome::Gone(ChallengeStatus::Expired)
    ));

    let (revoked, revoked_token) = challenge(&app, "revoked@example.com", t0());
    insert(&*store, &revoked, None).await;
    let other = app_in(&*store, "Other").await;
    assert!(!store.revoke_challenge(&other.id, &revoked.id, t0()).await.unwrap(), "foreign revoke");
    assert!(store.revoke_challenge(&app.id, &revoked.id, t0()).await.unwrap());
    assert!(!store.revoke_challenge(&app.id, &revoked.id, t0()).await.unwrap(), "already revoked");
    assert!(matches!(
        store.consume_link(&link_hash(&revoked_token), &code(t0()), t0()).await.unwrap(),
        ConsumeOutcome::Gone(ChallengeStatus::Revoked)
    ));
    let rec = store.challenge(&app.id, &revoked.id).await.unwrap().unwrap();
    assert_eq!(rec.challenge.status, ChallengeStatus::Revoked);

    assert!(matches!(
        store.consume_link(&link_hash("unknown"), &code(t0()), t0()).await.unwrap(),
        ConsumeOutcome::NotFound
    ));
}

pub async fn concurrent_link_consumption_has_one_winner(store: Arc<dyn Store>) {
    let app = app_in(&*store, "Race").await;
    let (c, token) = challenge(&app, "race@example.com", t0());
    insert(&*store, &c, None).await;
    let tasks = (0..50).map(|_| {
        let store = store.clone();
        let hash = link_hash(&token);
        let code = NewAuthorizationCode::generate(&app, &key(), t0());
        async move { store.consume_link(&hash, &code, t0()).await }
    });
    let results = futures_util::future::join_all(tasks).await;
    let won = results.iter().filter(|r| matches!(r, Ok(ConsumeOutcome::Consumed { .. }))).count();
    let lost =
        results.iter().filter(|r| matches!(r, Ok(ConsumeOutcome::Gone(ChallengeStatus::Consumed)))).count();
    assert_eq!((won, lost), (1, 49), "{results:?}");
}

async fn issued_code(store: &dyn Store, app: &Application, email: &str) -> String {
    let (c, token) = challenge(app, email, t0());
    issued_code_for(store, app, c, &token).await
}

async fn issued_code_for(store: &dyn Store, app: &Application, c: Challenge, token: &str) -> String {
    insert(store, &c, None).await;
    let code = NewAuthorizationCode::generate(app, &key(), t0());
    let plain = code.code.expose().to_owned();
    assert!(matches!(
        store.consume_link(&link_hash(token), &code, t0()).await.unwrap(),
        ConsumeOutcome::Consumed { .. }
    ));
    plain
}

/// A code remembers the redirect URI it was issued for, and whether the sign-in's caller named
/// it or took the application's default: the exchange must name it in the first case only.
pub async fn a_code_keeps_its_redirect_uri_and_whether_it_was_given(store: Arc<dyn Store>) {
    let app = app_in(&*store, "Given").await;
    let other = RedirectUri::parse("https://app.example/other").expect("uri");
    for given in [false, true] {
        let (mut c, token) = challenge(&app, &format!("given-{given}@example.com"), t0());
        if given {
            c.redirect_uri = other.clone();
        }
        c.redirect_uri_given = given;
        let stored_id = c.id.clone();
        let code = issued_code_for(&*store, &app, c, &token).await;
        let stored = store.challenge(&app.id, &stored_id).await.unwrap().expect("stored").challenge;
        assert_eq!(stored.redirect_uri_given, given);
        let hash = key().hash(HashPurpose::AuthorizationCode, &code);
        let (found, _) = store.authorization_code(&hash).await.unwrap().expect("issued");
        assert_eq!((found.redirect_uri_given, found.redirect_uri == other), (given, given));
        let redeemed = store.redeem_authorization_code(&hash, &app.id, t0(), None).await.unwrap();
        assert_eq!(redeemed.expect("redeems").redirect_uri_given, given);
    }
}

pub async fn authorization_code_redeems_once_for_its_own_application(store: Arc<dyn Store>) {
    let app = app_in(&*store, "Codes").await;
    let other = app_in(&*store, "Other").await;
    let code = issued_code(&*store, &app, "codes@example.com").await;
    let hash = key().hash(HashPurpose::AuthorizationCode, &code);

    assert!(
        store.redeem_authorization_code(&hash, &other.id, t0(), None).await.unwrap().is_none(),
        "foreign"
    );
    let (looked_up, user) =
        store.authorization_code(&hash).await.unwrap().expect("readable before redeeming");
    assert_eq!(looked_up.user_id, user.id, "read with the user it signs in");
    let (rt, rt_hash) = refresh(&app, &user, None, t0());
    let issued_event = Event::new(EventKind::TokenIssued, t0()).app(&app.id).user(&user.id);
    let redeemed = store
        .redeem_authorization_code(&hash, &app.id, t0(), Some((&rt, &issued_event)))
        .await
        .unwrap()
        .expect("redeems");
    assert!(store.refresh_token(&rt_hash).await.unwrap().is_some(), "the refresh token came with it");
    let (rt2, rt2_hash) = refresh(&app, &user, None, t0());
    assert!(
        store
            .redeem_authorization_code(&hash, &app.id, t0(), Some((&rt2, &issued_event)))
            .await
            .unwrap()
            .is_none()
    );
    assert!(store.refresh_token(&rt2_hash).await.unwrap().is_none(), "nothing written for a used code");
    assert_eq!(redeemed.app_id, app.id);
    assert!(
        store.redeem_authorization_code(&hash, &app.id, t0(), None).await.unwrap().is_none(),
        "single use"
    );

    let late_code = issued_code(&*store, &app, "late@example.com").await;
    let late_hash = key().hash(HashPurpose::AuthorizationCode, &late_code);
    let after_expiry = t0() + app.settings.lifetimes.authorization_code();
    assert!(
        store.redeem_authorization_code(&late_hash, &app.id, after_expiry, None).await.unwrap().is_none()
    );
}

pub async fn a_code_is_its_own_credential_only_when_its_challenge_says_so(store: Arc<dyn Store>) {
    let app = app_in(&*store, "Alone").await;
    for credential in [false, true] {
        let (mut c, token) = challenge(&app, &format!("alone-{credential}@example.com"), t0());
        c.code_is_credential = credential;
        insert(&*store, &c, None).await;
        let stored = store.challenge_by_link(&link_hash(&token)).await.unwrap().expect("stored");
        assert_eq!(stored.code_is_credential, credential, "the challenge keeps it");
        let code = NewAuthorizationCode::generate(&app, &key(), t0());
        let ConsumeOutcome::Consumed { code: issued, .. } =
            store.consume_link(&link_hash(&token), &code, t0()).await.unwrap()
        else {
            panic!("the link consumes");
        };
        assert_eq!(issued.code_is_credential, credential, "the issued code carries it");
        let (read, _) = store.authorization_code(&code.code_hash).await.unwrap().expect("readable");
        assert_eq!(read.code_is_credential, credential, "the stored code carries it");
    }
}

pub async fn concurrent_code_redemption_has_one_winner(store: Arc<dyn Store>) {
    let app = app_in(&*store, "CodeRace").await;
    let code = issued_code(&*store, &app, "coderace@example.com").await;
    let hash = key().hash(HashPurpose::AuthorizationCode, &code);
    let tasks = (0..50).map(|_| {
        let (store, hash, id) = (store.clone(), hash.clone(), app.id.clone());
        async move { store.redeem_authorization_code(&hash, &id, t0(), None).await }
    });
    let results = futures_util::future::join_all(tasks).await;
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
    let won = results.iter().filter(|r| matches!(r, Ok(Some(_)))).count();
    assert_eq!(won, 1);
}

pub async fn outbox_leases_retries_and_settles(store: Arc<dyn Store>) {
    let app = app_in(&*store, "Outbox").await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let (c, _) = challenge(&app, &format!("o{i}@example.com"), t0());
        let mail = mail_for(&app, &c);
        ids.push((c.id.clone(), mail.id.clone()));
        insert(&*store, &c, Some(&mail)).await;
    }
    let lease = t0() + Duration::seconds(60);
    let claimed = store.claim_outbox(t0(), lease, 2).await.unwrap();
    assert_eq!(claimed.len(), 2);
    assert_eq!(claimed[0].sealed, b"sealed body");
    let rest = store.claim_outbox(t0(), lease, 10).await.unwrap();
    assert_eq!(rest.len(), 1, "leased messages are not handed out twice");
    assert!(store.claim_outbox(t0(), lease, 10).await.unwrap().is_empty());

    // The first is sent, the second fails once, the third fails for good.
    store.outbox_sent(&[SentMail::direct(&claimed[0].id)], t0()).await.unwrap();
    let retry_at = t0() + Duration::seconds(30);
    store.outbox_attempt_failed(&claimed[1].id, "421 try later", Some(retry_at)).await.unwrap();
    store.outbox_attempt_failed(&rest[0].id, "550 no such user", None).await.unwrap();

    assert!(store.claim_outbox(t0() + Duration::seconds(10), lease, 10).await.unwrap().is_empty());
    let again = store.claim_outbox(retry_at, retry_at + Duration::seconds(60), 10).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].id.clone(), again[0].attempts), (claimed[1].id.clone(), 1));

    // A lease that ran out (a crashed worker) hands the message out again.
    let after_lease = retry_at + Duration::seconds(61);
    let reclaimed = store.claim_outbox(after_lease, after_lease + Duration::seconds(60), 10).await.unwrap();
    assert_eq!(reclaimed.len(), 1);

    let status_of = |mail_id: &OutboxId| {
        let (cid, _) = ids.iter().find(|(_, m)| m == mail_id).unwrap().clone();
        let store = store.clone();
        let app_id = app.id.clone();
        async move { store.challenge(&app_id, &cid).await.unwrap().unwrap().delivery.unwrap() }
    };
    let sent = status_of(&claimed[0].id).await;
    assert_eq!((sent.status, sent.attempts), (DeliveryStatus::Sent, 1));
    let retrying = status_of(&claimed[1].id).await;
    assert_eq!(
        (retrying.status, retrying.last_error.as_deref()),
        (DeliveryStatus::Queued, Some("421 try later"))
    );
    let failed = status_of(&rest[0].id).await;
    assert_eq!((failed.status, failed.attempts), (DeliveryStatus::Failed, 1));
}

pub async fn deliveries_are_recorded_in_one_batch(store: Arc<dyn Store>) {
    let app = app_in(&*store, "Batch").await;
    let mut challenges = Vec::new();
    for i in 0..5 {
        let (c, _) = challenge(&app, &format!("batch{i}@example.com"), t0());
        insert(&*store, &c, Some(&mail_for(&app, &c))).await;
        challenges.push(c.id.clone());
    }
    let claimed = store.claim_outbox(t0(), t0() + Duration::seconds(60), 10).await.unwrap();
    assert_eq!(claimed.len(), 5);
    let sent: Vec<SentMail> = claimed
        .iter()
        .take(4)
        .map(|m| SentMail { id: m.id.clone(), relay: Some("relay.example:25".into()) })
        .collect();
    store.outbox_sent(&sent, t0() + Duration::seconds(1)).await.unwrap();
    store.outbox_sent(&[], t0() + Duration::seconds(1)).await.unwrap();

    let backlog = store.outbox_backlog().await.unwrap();
    assert_eq!(backlog.queued, 1, "the fifth is still queued");
    let mut delivered_count = 0;
    for id in &challenges {
        let delivery = store.challenge(&app.id, id).await.unwrap().unwrap().delivery.unwrap();
        if delivery.status == DeliveryStatus::Sent {
            assert_eq!(delivery.relay.as_deref(), Some("relay.example:25"));
            delivered_count += 1;
        }
    }
    assert_eq!(delivered_count, 4);
    let delivered: Vec<_> = store
        .events(None, 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == EventKind::ChallengeDelivered)
        .collect();
    assert_eq!(delivered.len(), 4, "one event per message");
    let left =
        store.claim_outbox(t0() + Duration::seconds(61), t0() + Duration::seconds(120), 10).await.unwrap();
    assert_eq!(left.len(), 1, "sent messages are not handed out again");
}

pub async fn a_suppressed_address_gets_its_mail_written_suppressed_until_lifted_or_over(
    store: Arc<dyn Store>,
) {
    let app = app_in(&*store, "Suppressing").await;
    let address = |s: &str| EmailAddress::parse(s).unwrap();
    let suppression = |email: &str, until: OffsetDateTime| Suppression {
        email: address(email),
        reason: "550 5.1.1 no such mailbox".into(),
        created_at: t0(),
        until,
    };
    let month = t0() + Duration::days(30);
    store.suppress(&suppression("gone@example.com", t0() + Duration::days(1)), Some(&app.id)).await.unwrap();
    // Suppressed again: the later one replaces the earlier.
    store.suppress(&suppression("gone@example.com", month), Some(&app.id)).await.unwrap();
    store.suppress(&suppression("also-gone@example.com", month), None).await.unwrap();
    store.suppress(&suppression("was-gone@example.com", t0()), None).await.unwrap();
    let found = store.suppression(&address("gone@example.com"), t0()).await.unwrap();
    assert_eq!(found, Some(suppression("gone@example.com", month)));
    assert_eq!(store.suppression(&address("was-gone@example.com"), t0()).await.unwrap(), None, "over");
    let listed = store.list_suppressions(None, 10, t0()).await.unwrap();
    let emails: Vec<_> = listed.iter().map(|s| s.email.as_str().to_owned()).collect();
    assert_eq!(emails, ["also-gone@example.com", "gone@example.com"], "in force, by address");
    let first = address("also-gone@example.com");
    let rest = store.list_suppressions(Some(&first), 10, t0()).await.unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].email.as_str(), "gone@example.com");

    // Mail for a suppressed address is written suppressed, without its body, and never claimed.
    let (quiet, _) = challenge(&app, "gone@example.com", t0());
    let (held, _) = challenge(&app, "gone@example.com", t0());
    let (loud, _) = challenge(&app, "here@example.com", t0());
    let fate = |c: &Challenge, mail: NewOutboxMessage| {
        let store = store.clone();
        let c = c.clone();
        async move { store.create_challenge(&c, Some(&mail), &[], t0()).await.unwrap().unwrap() }
    };
    assert_eq!(fate(&quiet, mail_for(&app, &quiet)).await, MailFate::Suppressed);
    assert_eq!(
        fate(&held, NewOutboxMessage { held: true, ..mail_for(&app, &held) }).await,
        MailFate::Suppressed
    );
    assert_eq!(fate(&loud, mail_for(&app, &loud)).await, MailFate::Written);
    let (plain, _) = challenge(&app, "gone@example.com", t0());
    assert_eq!(store.create_challenge(&plain, None, &[], t0()).await.unwrap(), Ok(MailFate::NoMail));
    for c in [&quiet, &held] {
        let delivery = store.challenge(&app.id, &c.id).await.unwrap().unwrap().delivery.unwrap();
        assert_eq!((delivery.status, delivery.attempts), (DeliveryStatus::Suppressed, 0));
    }
    assert!(!store.release_held_mail(&app.id, &held.id, t0()).await.unwrap(), "nothing held to release");
    let claimed = store.claim_outbox(t0(), t0() + Duration::minutes(1), 10).await.unwrap();
    assert_eq!(claimed.len(), 1, "only the other address's mail");
    assert_eq!(claimed[0].app_id.as_ref(), Some(&app.id));

    let events = store.events(None, 100).await.unwrap();
    let of = |kind: EventKind| events.iter().filter(|e| e.kind == kind).collect::<Vec<_>>();
    let mut noted: Vec<_> =
        of(EventKind::MailSuppressed).iter().map(|e| e.subject.clone().unwrap()).collect();
    let mut expected = vec![quiet.id.to_string(), held.id.to_string()];
    noted.sort();
    expected.sort();
    assert_eq!(noted, expected);
    assert_eq!(of(EventKind::SuppressionCreated).len(), 4);

    // Lifted: gone from the list, and the next e-mail is written as given.
    assert!(store.delete_suppression(&address("gone@example.com"), t0()).await.unwrap());
    assert!(!store.delete_suppression(&address("gone@example.com"), t0()).await.unwrap(), "once");
    assert!(!store.delete_suppression(&address("was-gone@example.com"), t0()).await.unwrap(), "over already");
    let (after, _) = challenge(&app, "gone@example.com", t0());
    assert_eq!(fate(&after, mail_for(&app, &after)).await, MailFate::Written);
    assert_eq!(
        store
            .events(None, 100)
            .await
            .unwrap()
            .iter()
            .filter(|e| e.kind == EventKind::SuppressionDeleted)
            .count(),
        1
    );

    // Once over, a suppression no longer counts, and the purge removes it.
    let later = month + Duration::seconds(1);
    let (late, _) = challenge(&app, "also-gone@example.com", later);
    assert_eq!(
        store.create_challenge(&late, Some(&mail_for(&app, &late)), &[], later).await.unwrap(),
        Ok(MailFate::Written)
    );
    store.purge_expired(later).await.unwrap();
    assert!(store.list_suppressions(None, 10, t0()).await.unwrap().is_empty(), "purged");
}

pub async fn a_dkim_key_is_stored_once_per_selector(store: Arc<dyn Store>) {
    assert_eq!(store.dkim_key("latchkey").await.unwrap(), None);
    let first = StoredDkimKey {
        selector: "latchkey".into(),
        algorithm: "rsa-sha256".into(),
        sealed_pkcs8: b"first".to_vec(),
        created_at: t0(),
    };
    assert_eq!(store.insert_dkim_key(&first).await.unwrap(), first);
    let second = StoredDkimKey { sealed_pkcs8: b"second".to_vec(), ..first.clone() };
    assert_eq!(store.insert_dkim_key(&second).await.unwrap(), first, "the first key of a selector stays");
    let other = StoredDkimKey { selector: "other".into(), algorithm: "ed25519-sha256".into(), ..second };
    assert_eq!(store.insert_dkim_key(&other).await.unwrap(), other);
    assert_eq!(store.dkim_key("latchkey").await.unwrap(), Some(first));
}

pub async fn outbox_backlog_counts_what_waits(store: Arc<dyn Store>) {
    let empty = OutboxBacklog { queued: 0, oldest_queued_at: None };
    assert_eq!(store.outbox_backlog().await.unwrap(), empty);
    let app = app_in(&*store, "Backlog").await;
    for (i, at) in [t0(), t0() + Duration::seconds(5)].into_iter().enumerate() {
        let (c, _) = challenge(&app, &format!("b{i}@example.com"), at);
        insert(&*store, &c, Some(&mail_for(&app, &c))).await;
    }
    let (c, _) = challenge(&app, "no-mail@example.com", t0());
    insert(&*store, &c, None).await;
    assert_eq!(
        store.outbox_backlog().await.unwrap(),
        OutboxBacklog { queued: 2, oldest_queued_at: Some(t0()) }
    );

    // Leased or waiting for a retry, a message still waits; sent or failed for good, it does not.
    let lease = t0() + Duration::seconds(60);
    let claimed = store.claim_outbox(t0() + Duration::seconds(5), lease, 10).await.unwrap();
    assert_eq!(store.outbox_backlog().await.unwrap().queued, 2);
    store.outbox_sent(&[SentMail::direct(&claimed[0].id)], t0()).await.unwrap();
    let left = store.outbox_backlog().await.unwrap();
    assert_eq!(left, OutboxBacklog { queued: 1, oldest_queued_at: Some(t0() + Duration::seconds(5)) });
    store.outbox_attempt_failed(&claimed[1].id, "550 no such user", None).await.unwrap();
    assert_eq!(store.outbox_backlog().await.unwrap(), empty);
}

pub async fn held_mail_waits_until_released_once(store: Arc<dyn Store>) {
    let app = app_in(&*store, "Held").await;
    let (c, _) = challenge(&app, "held@example.com", t0());
    let mail = NewOutboxMessage { held: true, ..mail_for(&app, &c) };
    insert(&*store, &c, Some(&mail)).await;
    let delivery = store.challenge(&app.id, &c.id).await.unwrap().unwrap().delivery.expect("mail written");
    assert_eq!((delivery.status, delivery.attempts), (DeliveryStatus::Held, 0));
    let later = t0() + Duration::minutes(5);
    let lease = later + Duration::seconds(60);
    assert!(store.claim_outbox(later, lease, 10).await.unwrap().is_empty(), "held mail is not delivered");

    let other = app_in(&*store, "Other").await;
    assert!(!store.release_held_mail(&other.id, &c.id, later).await.unwrap(), "another application's");
    let (unheld, _) = challenge(&app, "queued@example.com", t0());
    insert(&*store, &unheld, Some(&mail_for(&app, &unheld))).await;
    assert!(!store.release_held_mail(&app.id, &unheld.id, later).await.unwrap(), "mail never held");

    assert!(store.release_held_mail(&app.id, &c.id, later).await.unwrap());
    assert!(!store.release_held_mail(&app.id, &c.id, later).await.unwrap(), "released once");
    let delivery = store.challenge(&app.id, &c.id).await.unwrap().unwrap().delivery.unwrap();
    assert_eq!(delivery.status, DeliveryStatus::Queued);
    let claimed = store.claim_outbox(later, lease, 10).await.unwrap();
    let ids: Vec<_> = claimed.iter().map(|m| m.id.clone()).collect();
    assert!(ids.contains(&mail.id), "released mail is delivered");
    assert_eq!(claimed.len(), 2, "with the mail that was never held");

    // Concurrent releases: exactly one wins.
    let (raced, _) = challenge(&app, "raced@example.com", t0());
    insert(&*store, &raced, Some(&NewOutboxMessage { held: true, ..mail_for(&app, &raced) })).await;
    let calls = (0..8).map(|_| {
        let (store, app_id, id) = (store.clone(), app.id.clone(), raced.id.clone());
        async move { store.release_held_mail(&app_id, &id, later).await.unwrap() }
    });
    let wins = futures_util::future::join_all(calls).await.into_iter().filter(|won| *won).count();
    assert_eq!(wins, 1);
}

/// Every view of a link is counted, the first `keep` are kept in full (a flood stays bounded),
/// a press records its time once, the delivery time comes from the outbox, and the views go
/// when their challenge is purged.
pub async fn link_views_are_counted_kept_up_to_a_bound_and_purged_with_their_challenge(
    store: Arc<dyn Store>,
) {
    use latchkey_core::link_view::{LinkView, ViewMethod};
    let app = app_in(&*store, "Viewed").await;
    let (c, _) = challenge(&app, "viewed@example.com", t0());
    let mail = mail_for(&app, &c);
    insert(&*store, &c, Some(&mail)).await;
    let empty = store.link_views(&c.id).await.unwrap();
    assert_eq!((empty.total, empty.views.len(), empty.delivered_at), (0, 0, None));

    let delivered = t0() + Duration::seconds(10);
    let claimed = store.claim_outbox(delivered, delivered + Duration::seconds(6), 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    store.outbox_sent(&[SentMail::direct(&mail.id)], delivered).await.unwrap();

    let at = |s: i64| t0() + Duration::seconds(s);
    let view =
        |s, method| LinkView::new(c.id.clone(), at(s), method, Some("192.0.2.7".into()), Some("Agent/1"));
    let record = |views: Vec<LinkView>| {
        let store = store.clone();
        async move { store.record_link_views(&views, 3).await.unwrap() }
    };
    let first = record(vec![view(11, ViewMethod::Head)]).await;
    let signs = latchkey_core::link_view::signs_on_arrival(&view(11, ViewMethod::Head), Some(delivered));
    assert!(signs.len() == 2, "a HEAD a second after delivery: {signs:?}");
    assert_eq!(first, [RecordedView { kept: true, signs }]);
    // A batch: the bound counts within it too.
    let batch =
        record(vec![view(60, ViewMethod::Get), view(61, ViewMethod::Post), view(62, ViewMethod::Get)]).await;
    assert_eq!(batch.iter().map(|r| r.kept).collect::<Vec<_>>(), [true, true, false]);
    let flood = (0..10).map(|i| record(vec![view(70 + i, ViewMethod::Get)]));
    let kept = futures_util::future::join_all(flood).await.into_iter().filter(|r| r[0].kept).count();
    assert_eq!(kept, 0, "past the bound, views are only counted");
    // A second press does not move the first press's time.
    record(vec![view(90, ViewMethod::Post)]).await;

    let views = store.link_views(&c.id).await.unwrap();
    assert_eq!(views.total, 15);
    assert_eq!(
        views.views,
        vec![view(11, ViewMethod::Head), view(60, ViewMethod::Get), view(61, ViewMethod::Post)]
    );
    assert_eq!((views.delivered_at, views.pressed_at), (Some(delivered), Some(at(61))));
    // Each kept view has its event, with the signs it showed on arrival.
    let events = store.events(None, 100).await.unwrap();
    let viewed: Vec<&Event> = events.iter().filter(|e| e.kind == EventKind::LinkViewed).collect();
    assert_eq!(viewed.len(), 3);
    assert_eq!(viewed[0].subject.as_deref(), Some(c.id.as_str()));
    assert_eq!(viewed[0].app_id.as_ref(), Some(&app.id));
    assert_eq!(
        viewed[0].detail.as_deref(),
        Some(r#"{"method":"HEAD","likely_scanner":true,"signs":["head","too_soon"]}"#)
    );

    // Another challenge's views are its own; a challenge that is gone keeps none.
    let (other, _) = challenge(&app, "other@example.com", t0());
    insert(&*store, &other, None).await;
    let bare = LinkView::new(other.id.clone(), at(5), ViewMethod::Get, None, None);
    let unknown = LinkView::new(ChallengeId::generate(t0()), at(5), ViewMethod::Get, None, None);
    let recorded = record(vec![bare, unknown.clone()]).await;
    let no_agent = vec![latchkey_core::link_view::Sign::ScannerAgent];
    assert_eq!(recorded[0], RecordedView { kept: true, signs: no_agent }, "no e-mail, so not too soon");
    assert!(!recorded[1].kept);
    assert_eq!(store.link_views(&other.id).await.unwrap().total, 1);
    assert_eq!(store.link_views(&unknown.challenge_id).await.unwrap().total, 0);

    // Purged a day after the challenge expired, with it.
    store.purge_expired(c.expires_at + Duration::days(2)).await.unwrap();
    assert_eq!(store.link_views(&c.id).await.unwrap(), Default::default());
}

/// A worker renews the leases of what it is still delivering: those outlive the lease they
/// were claimed with, the others lapse and go to the next claim. Sent and failed messages are
/// not renewed.
pub async fn outbox_leases_renewed_in_flight_outlive_the_others(store: Arc<dyn Store>) {
    let ids = queued_messages(&*store, 4).await;
    let lease = Duration::seconds(6);
    let claimed = store.claim_outbox(t0(), t0() + lease, 10).await.unwrap();
    assert_eq!(claimed.len(), 4);

    // Two seconds on, the first two are still being delivered: renewed.
    let now = t0() + Duration::seconds(2);
    assert_eq!(store.renew_outbox_leases(&ids[..2], now + lease).await.unwrap(), 2);
    // Past the first lease, only the two that were not renewed are handed out again.
    let later = t0() + Duration::seconds(7);
    let again: Vec<OutboxId> =
        store.claim_outbox(later, later + lease, 10).await.unwrap().into_iter().map(|m| m.id).collect();
    assert_eq!(again, ids[2..].to_vec(), "the messages whose leases lapsed, and only those");

    // What is settled is not renewed: sent, failed for good, or waiting for its retry.
    store.outbox_sent(&[SentMail::direct(&ids[0])], later).await.unwrap();
    store.outbox_attempt_failed(&ids[2], "550 no such user", None).await.unwrap();
    store.outbox_attempt_failed(&ids[3], "451 later", Some(later + Duration::minutes(1))).await.unwrap();
    assert_eq!(store.renew_outbox_leases(&ids, later + lease).await.unwrap(), 1, "only the one in flight");
    assert_eq!(store.renew_outbox_leases(&[], later + lease).await.unwrap(), 0);
    let status = store.claim_outbox(later + Duration::seconds(1), later + lease, 10).await.unwrap();
    assert!(status.is_empty(), "the renewed lease holds, the retry is not due yet");
}

pub async fn signing_keys_round_trip(store: Arc<dyn Store>) {
    assert!(store.signing_keys().await.unwrap().is_empty());
    for (kid, alg) in [("k1", SigningAlg::ES256), ("k2", SigningAlg::EdDSA)] {
        let key = StoredSigningKey {
            kid: kid.into(),
            alg,
            sealed_pkcs8: vec![9; 40],
            created_at: t0(),
            retired_at: None,
        };
        store.insert_signing_key(&key).await.unwrap();
    }
    let keys = store.signing_keys().await.unwrap();
    assert_eq!(
        keys.iter().map(|k| (k.kid.as_str(), k.alg)).collect::<Vec<_>>(),
        [("k1", SigningAlg::ES256), ("k2", SigningAlg::EdDSA)]
    );
    assert_eq!(keys[0].sealed_pkcs8, vec![9; 40]);
}

pub async fn deleting_an_application_removes_what_it_owns(store: Arc<dyn Store>) {
    let app = application("Doomed");
    let secret = ClientSecret {
        id: SecretId::generate(t0()),
        app_id: app.id.clone(),
        hash: vec![7; 32],
        created_at: t0(),
    };
    store.insert_application(&app, Some(&secret)).await.unwrap();
    let code = issued_code(&*store, &app, "doomed@example.com").await;
    let (c, token) = challenge(&app, "doomed2@example.com", t0());
    insert(&*store, &c, Some(&mail_for(&app, &c))).await;

    assert!(store.delete_application(&app.id).await.unwrap());
    assert!(store.application_by_secret_hash(&[7; 32]).await.unwrap().is_none());
    assert!(store.challenge_by_link(&link_hash(&token)).await.unwrap().is_none());
    let hash = key().hash(HashPurpose::AuthorizationCode, &code);
    assert!(store.redeem_authorization_code(&hash, &app.id, t0(), None).await.unwrap().is_none());
    let lease = t0() + Duration::seconds(60);
    assert!(store.claim_outbox(t0(), lease, 10).await.unwrap().is_empty());
}

pub async fn rate_limits_count_per_window_and_refuse_without_writing(store: Arc<dyn Store>) {
    let app = app_in(&*store, "Limits").await;
    let limits = [
        RateLimit { key: "email:x:m".into(), window: Duration::minutes(1), limit: 2 },
        RateLimit { key: "email:x:h".into(), window: Duration::hours(1), limit: 3 },
    ];
    let at = t0() + Duration::seconds(10);
    for i in 0..2 {
        let (c, _) = challenge(&app, &format!("l{i}@example.com"), at);
        assert_eq!(store.create_challenge(&c, None, &limits, at).await.unwrap(), Ok(MailFate::NoMail));
    }
    let (refused, token) = challenge(&app, "l2@example.com", at);
    let outcome = store.create_challenge(&refused, None, &limits, at).await.unwrap();
    assert_eq!(outcome, Err(RateLimited { retry_after: Duration::seconds(50), kind: RateLimitKind::Email }));
    assert!(store.challenge_by_link(&link_hash(&token)).await.unwrap().is_none(), "nothing written");
    // The refusal counted nothing: the next minute allows one more (the hour's third).
    let next = t0() + Duration::seconds(61);
    assert_eq!(store.hit_rate_limits(&limits, next).await.unwrap(), Ok(()));
    let refused = store.hit_rate_limits(&limits, next).await.unwrap().unwrap_err();
    assert_eq!(refused.retry_after, Duration::seconds(3600 - 61));
    assert_eq!(store.hit_rate_limits(&[], next).await.unwrap(), Ok(()));
}

pub async fn codes_consume_once_count_wrong_guesses_and_race_the_link(store: Arc<dyn Store>) {
    let app = app_in(&*store, "Codes").await;
    let email = EmailAddress::parse("otp@example.com").unwrap();
    let (older, _, _) = challenge_with_otp(&app, email.as_str(), t0());
    insert(&*store, &older, None).await;
    let later = t0() + Duration::seconds(1);
    let (c, token, otp) = challenge_with_otp(&app, email.as_str(), later);
    insert(&*store, &c, None).await;
    let latest = store.latest_pending_challenge(&app.id, &email, later).await.unwrap().expect("pending");
    assert_eq!(latest.id, c.id, "only the newest challenge takes a code");
    let other = app_in(&*store, "Other").await;
    assert!(store.latest_pending_challenge(&other.id, &email, later).await.unwrap().is_none());

    let hash = |otp: &Otp| key().hash(HashPurpose::Otp, &otp_subject(&c.id, otp));
    let wrong = Otp::parse("000000").filter(|w| w != &otp).unwrap_or_else(|| Otp::parse("111111").unwrap());
    match store.consume_by_otp(&c.id, &hash(&wrong), 5, later).await.unwrap() {
        OtpOutcome::Wrong { attempts_left } => assert_eq!(attempts_left, 4),
        other => panic!("{other:?}"),
    }
    // The right code and the link race: exactly one wins.
    let code = NewAuthorizationCode::generate(&app, &key(), later);
    let (otp_hash, token_hash) = (hash(&otp), link_hash(&token));
    let (by_code, by_link) = futures_util::join!(
        store.consume_by_otp(&c.id, &otp_hash, 5, later),
        store.consume_link(&token_hash, &code, later)
    );
    let code_won = matches!(by_code.unwrap(), OtpOutcome::Consumed { .. });
    let link_won = matches!(by_link.unwrap(), ConsumeOutcome::Consumed { .. });
    assert!(code_won ^ link_won, "code {code_won}, link {link_won}");
    assert!(matches!(store.consume_by_otp(&c.id, &hash(&otp), 5, later).await.unwrap(), OtpOutcome::Gone));

    // Five wrong codes burn a challenge, even for the right code afterwards.
    let (burn, _, burn_otp) = challenge_with_otp(&app, "burn@example.com", t0());
    insert(&*store, &burn, None).await;
    let wrong_hash = key().hash(HashPurpose::Otp, &otp_subject(&burn.id, &Otp::parse("999999").unwrap()));
    let right_hash = key().hash(HashPurpose::Otp, &otp_subject(&burn.id, &burn_otp));
    let mut left = Vec::new();
    for _ in 0..5 {
        match store.consume_by_otp(&burn.id, &wrong_hash, 5, t0()).await.unwrap() {
            OtpOutcome::Wrong { attempts_left } => left.push(attempts_left),
            OtpOutcome::Gone => left.push(99),
            other => panic!("{other:?}"),
        }
    }
    if burn_otp.expose() != "999999" {
        assert_eq!(left, [4, 3, 2, 1, 0]);
        assert!(matches!(
            store.consume_by_otp(&burn.id, &right_hash, 5, t0()).await.unwrap(),
            OtpOutcome::Gone
        ));
        let rec = store.challenge(&app.id, &burn.id).await.unwrap().unwrap();
        assert_eq!(rec.challenge.status, ChallengeStatus::Revoked);
    }

    // A code past its own lifetime (shorter than the link's) is gone.
    let (late, _, late_otp) = challenge_with_otp(&app, "late@example.com", t0());
    insert(&*store, &late, None).await;
    let late_hash = key().hash(HashPurpose::Otp, &otp_subject(&late.id, &late_otp));
    assert!(matches!(
        store.consume_by_otp(&late.id, &late_hash, 5, late.otp_expires_at).await.unwrap(),
        OtpOutcome::Gone
    ));
    let late_email = EmailAddress::parse("late@example.com").unwrap();
    assert!(store.latest_pending_challenge(&app.id, &late_email, late.expires_at).await.unwrap().is_none());
    let fresh = store
        .latest_pending_challenge(&app.id, &EmailAddress::parse("late@example.com").unwrap(), t0())
        .await
        .unwrap();
    assert!(fresh.is_some());
}

async fn signed_in_user(store: &dyn Store, app: &Application, email: &str) -> latchkey_core::User {
    let (c, token) = challenge(app, email, t0());
    insert(store, &c, None).await;
    let code = NewAuthorizationCode::generate(app, &key(), t0());
    match store.consume_link(&link_hash(&token), &code, t0()).await.unwrap() {
        ConsumeOutcome::Consumed { user, .. } => user,
        other => panic!("{other:?}"),
    }
}

fn refresh(
    app: &Application,
    user: &latchkey_core::User,
    family: Option<latchkey_core::id::FamilyId>,
    now: OffsetDateTime,
) -> (RefreshToken, Vec<u8>) {
    let (t, plain) = RefreshToken::issue(
        &key(),
        family,
        app.id.clone(),
        user.id.clone(),
        AuthMethod::Link,
        t0(),
        "openid email",
        Duration::days(30),
        now,
    );
    let hash = key().hash(HashPurpose::RefreshToken, &plain);
    (t, hash)
}

pub async fn refresh_tokens_rotate_and_reuse_revokes_the_family(store: Arc<dyn Store>) {
    let app = app_in(&*store, "Refresh").await;
    let other = app_in(&*store, "Other").await;
    let user = signed_in_user(&*store, &app, "refresh@example.com").await;
    let (first, first_hash) = refresh(&app, &user, None, t0());
    let issued = Event::new(EventKind::TokenIssued, t0()).app(&app.id).user(&user.id);
    store.insert_refresh_token(&first, Some(&issued)).await.unwrap();
    assert_eq!(store.user_sessions(&user.id, t0()).await.unwrap().len(), 1);

    let later = t0() + Duration::hours(1);
    let (second, second_hash) = refresh(&app, &user, Some(first.family_id.clone()), later);
    assert!(
        matches!(
            store.rotate_refresh_token(&first_hash, &other.id, &second, None, later).await.unwrap(),
            RotateOutcome::Invalid
        ),
        "foreign"
    );
    let refreshed = Event::new(EventKind::TokenRefreshed, later).app(&app.id).user(&user.id);
    match store.rotate_refresh_token(&first_hash, &app.id, &second, Some(&refreshed), later).await.unwrap() {
        RotateOutcome::Rotated(old) => assert_eq!(old.id, first.id),
        other => panic!("{other:?}"),
    }
    let sessions = store.user_sessions(&user.id, later).await.unwrap();
    assert_eq!(sessions.iter().map(|s| s.id.clone()).collect::<Vec<_>>(), vec![second.id.clone()]);
    assert!(store.refresh_token(&first_hash).await.unwrap().unwrap().rotated_at.is_some());

    // The first token again: the family is revoked, the second token with it.
    let (third, _) = refresh(&app, &user, Some(first.family_id.clone()), later);
    match store.rotate_refresh_token(&first_hash, &app.id, &third, None, later).await.unwrap() {
        RotateOutcome::Reused { family_id, user_id } => {
            assert_eq!((family_id, user_id), (first.family_id.clone(), user.id.clone()))
        }
        other => panic!("{other:?}"),
    }
    assert!(store.refresh_token(&second_hash).await.unwrap().unwrap().revoked_at.is_some());
    assert!(matches!(
        store.rotate_refresh_token(&second_hash, &app.id, &third, None, later).await.unwrap(),
        RotateOutcome::Reused { .. } | RotateOutcome::Invalid
    ));
    assert!(store.user_sessions(&user.id, later).await.unwrap().is_empty());
    let kinds: Vec<EventKind> = store.events(None, 100).await.unwrap().into_iter().map(|e| e.kind).collect();
    assert!(kinds.contains(&EventKind::RefreshReuseDetected));
    assert_eq!(kinds.iter().filter(|k| **k == EventKind::TokenIssued).count(), 1, "written with the token");
    assert_eq!(
        kinds.iter().filter(|k| **k == EventKind::TokenRefreshed).count(),
        1,
        "written with the rotation"
    );

    // Expired tokens do not rotate; revoking sessions ends the rest.
    let (a, a_hash) = refresh(&app, &user, None, t0());
    let (b, _) = refresh(&app, &user, None, t0());
    store.insert_refresh_token(&a, None).await.unwrap();
    store.insert_refresh_token(&b, None).await.unwrap();
    let (next, _) = refresh(&app, &user, Some(a.family_id.clone()), a.expires_at);
    assert!(matches!(
        store.rotate_refresh_token(&a_hash, &app.id, &next, None, a.expires_at).await.unwrap(),
        RotateOutcome::Invalid
    ));
    assert_eq!(store.revoke_user_sessions(&user.id, later).await.unwrap(), 2);
    assert!(store.user_sessions(&user.id, later).await.unwrap().is_empty());
    let (c, _) = refresh(&app, &user, None, t0());
    store.insert_refresh_token(&c, None).await.unwrap();
    assert_eq!(store.revoke_refresh_family(&c.family_id, later).await.unwrap(), 1);
}

pub async fn users_round_trip_and_paginate(store: Arc<dyn Store>) {
    let mut users = Vec::new();
    for i in 0..5 {
        let mut u = User::new(EmailAddress::parse(&format!("u{i}@example.com")).unwrap(), t0());
        u.name = Some(format!("User {i}"));
        u.metadata.insert("plan".into(), "pro".into());
        u.locale = Some("fr".into());
        store.insert_user(&u).await.unwrap();
        users.push(u);
    }
    let dup = User::new(EmailAddress::parse("u0@example.com").unwrap(), t0());
    assert!(matches!(store.insert_user(&dup).await, Err(crate::StoreError::Conflict(_))));
    let got = store.user(&users[2].id).await.unwrap().unwrap();
    assert_eq!(
        (got.name.as_deref(), got.metadata.get("plan").map(String::as_str), got.email_verified),
        (Some("User 2"), Some("pro"), false)
    );

    let page1 = store.list_users(None, 2).await.unwrap();
    let page2 = store.list_users(Some(&page1[1].id), 2).await.unwrap();
    let page3 = store.list_users(Some(&page2[1].id), 2).await.unwrap();
    let ids: Vec<_> = [page1, page2, page3].concat().into_iter().map(|u| u.id).collect();
    assert_eq!(ids, users.iter().map(|u| u.id.clone()).collect::<Vec<_>>());

    let mut changed = users[1].clone();
    changed.email = EmailAddress::parse("renamed@example.com").unwrap();
    changed.name = None;
    changed.locale = Some("de-CH".into());
    changed.updated_at = t0() + Duration::seconds(9);
    assert!(store.update_user(&changed).await.unwrap());
    let got = store.user(&changed.id).await.unwrap().unwrap();
    assert_eq!(
        (got.email.as_str(), got.name, got.updated_at),
        ("renamed@example.com", None, changed.updated_at)
    );
    changed.email = EmailAddress::parse("u3@example.com").unwrap();
    assert!(matches!(store.update_user(&changed).await, Err(crate::StoreError::Conflict(_))));

    assert!(store.delete_user(&users[0].id).await.unwrap());
    assert!(store.user(&users[0].id).await.unwrap().is_none());
    assert!(!store.delete_user(&users[0].id).await.unwrap());
}

pub async fn events_record_each_step_in_order(store: Arc<dyn Store>) {
    let app = app_in(&*store, "Events").await;
    let user = signed_in_user(&*store, &app, "events@example.com").await;
    store
        .insert_event(
            &Event::new(EventKind::TokenIssued, t0())
                .app(&app.id)
                .user(&user.id)
                .detail(serde_json::json!({"grant": "authorization_code"})),
        )
        .await
        .unwrap();
    let events = store.events(None, 100).await.unwrap();
    let kinds: Vec<EventKind> = events.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            EventKind::ChallengeCreated,
            EventKind::ChallengeConsumed,
            EventKind::UserCreated,
            EventKind::TokenIssued
        ]
    );
    assert!(events.iter().all(|e| e.app_id.as_ref() == Some(&app.id)));
    assert_eq!(events[3].detail.as_deref(), Some(r#"{"grant":"authorization_code"}"#));
    let after = store.events(Some(events[1].id.as_str()), 1).await.unwrap();
    assert_eq!(after.iter().map(|e| e.kind).collect::<Vec<_>>(), [EventKind::UserCreated]);
    assert!(store.events(Some(events[3].id.as_str()), 10).await.unwrap().is_empty());

    // A second sign-in of the same address creates no user.
    signed_in_user(&*store, &app, "events@example.com").await;
    let users_created =
        store.events(None, 100).await.unwrap().iter().filter(|e| e.kind == EventKind::UserCreated).count();
    assert_eq!(users_created, 1);
}

pub async fn leases_are_exclusive_until_they_expire(store: Arc<dyn Store>) {
    let until = t0() + Duration::seconds(30);
    assert!(store.try_lease("purge", "a", t0(), until).await.unwrap());
    assert!(!store.try_lease("purge", "b", t0(), until).await.unwrap());
    assert!(
        store
            .try_lease("purge", "a", t0() + Duration::seconds(10), until + Duration::seconds(10))
            .await
            .unwrap(),
        "renewal"
    );
    assert!(store.try_lease("rotate", "b", t0(), until).await.unwrap(), "leases are per name");
    let later = until + Duration::seconds(10);
    assert!(store.try_lease("purge", "b", later, later + Duration::seconds(30)).await.unwrap());
    assert!(!store.try_lease("purge", "a", later, later + Duration::seconds(30)).await.unwrap());
}

pub async fn purge_removes_only_what_expired(store: Arc<dyn Store>) {
    let app = app_in(&*store, "Purge").await;
    let (old, old_token) = challenge(&app, "old@example.com", t0());
    insert(&*store, &old, Some(&mail_for(&app, &old))).await;
    let code = issued_code(&*store, &app, "coded@example.com").await;
    let user =
        store.user_by_email(&EmailAddress::parse("coded@example.com").unwrap()).await.unwrap().unwrap();
    let (rt, rt_hash) = refresh(&app, &user, None, t0());
    store.insert_refresh_token(&rt, None).await.unwrap();
    store
        .hit_rate_limits(&[RateLimit { key: "k".into(), window: Duration::minutes(1), limit: 5 }], t0())
        .await
        .unwrap()
        .unwrap();

    let soon = t0() + Duration::hours(2);
    let (young, young_token) = challenge(&app, "young@example.com", soon);
    insert(&*store, &young, None).await;
    assert!(store.purge_expired(soon).await.unwrap() >= 2, "the code and the rate window");
    assert!(
        store.challenge_by_link(&link_hash(&old_token)).await.unwrap().is_some(),
        "kept a day after expiry"
    );
    let hash = key().hash(HashPurpose::AuthorizationCode, &code);
    assert!(store.redeem_authorization_code(&hash, &app.id, t0(), None).await.unwrap().is_none());

    let much_later = old.expires_at + Duration::days(1) + Duration::seconds(1);
    store.purge_expired(much_later).await.unwrap();
    assert!(store.challenge_by_link(&link_hash(&old_token)).await.unwrap().is_none());
    assert!(store.challenge_by_link(&link_hash(&young_token)).await.unwrap().is_some());
    assert!(store.refresh_token(&rt_hash).await.unwrap().is_some(), "refresh token still valid");
    store.purge_expired(rt.expires_at + Duration::seconds(1)).await.unwrap();
    assert!(store.refresh_token(&rt_hash).await.unwrap().is_none());
    assert!(store.user(&user.id).await.unwrap().is_some(), "users are never purged");
}

pub async fn signing_keys_retire_and_are_deleted_later(store: Arc<dyn Store>) {
    for (kid, alg) in [("k1", SigningAlg::ES256), ("k2", SigningAlg::EdDSA)] {
        let key = StoredSigningKey {
            kid: kid.into(),
            alg,
            sealed_pkcs8: vec![1],
            created_at: t0(),
            retired_at: None,
        };
        store.insert_signing_key(&key).await.unwrap();
    }
    let at = t0() + Duration::hours(1);
    store.retire_signing_keys(SigningAlg::ES256, at).await.unwrap();
    let keys = store.signing_keys().await.unwrap();
    let retired: Vec<_> = keys.iter().map(|k| (k.kid.as_str(), k.retired_at)).collect();
    assert_eq!(retired, [("k1", Some(at)), ("k2", None)]);
    assert_eq!(store.delete_signing_keys_retired_before(at).await.unwrap(), 0);
    assert_eq!(store.delete_signing_keys_retired_before(at + Duration::seconds(1)).await.unwrap(), 1);
    assert_eq!(store.signing_keys().await.unwrap().len(), 1);
}

fn with_purpose(
    app: &Application,
    purpose: Purpose,
    email: &str,
    now: OffsetDateTime,
) -> (Challenge, Vec<u8>) {
    let (mut c, token) = challenge(app, email, now);
    c.purpose = purpose;
    c.created_by = Some("ops@example.com".into());
    (c, link_hash(&token))
}

pub async fn tokens_consume_only_their_own_purpose_and_application(store: Arc<dyn Store>) {
    let app = app_in(&*store, "Tokens").await;
    let other = app_in(&*store, "Other").await;
    let (reg, reg_hash) = with_purpose(&app, Purpose::Registration, "reg@example.com", t0());
    insert(&*store, &reg, None).await;
    let (login, login_token) = challenge(&app, "login@example.com", t0());
    insert(&*store, &login, None).await;

    let outcome = |purpose, hash: Vec<u8>, app_id: AppId, at| {
        let store = store.clone();
        async move { store.consume_by_token(purpose, &hash, &app_id, at).await.unwrap() }
    };
    assert!(matches!(
        outcome(Purpose::Verification, reg_hash.clone(), app.id.clone(), t0()).await,
        TokenOutcome::NotFound
    ));
    assert!(matches!(
        outcome(Purpose::Registration, reg_hash.clone(), other.id.clone(), t0()).await,
        TokenOutcome::NotFound
    ));
    assert!(
        matches!(
            outcome(Purpose::Registration, link_hash(&login_token), app.id.clone(), t0()).await,
            TokenOutcome::NotFound
        ),
        "a sign-in link is no registration"
    );
    match outcome(Purpose::Registration, reg_hash.clone(), app.id.clone(), t0()).await {
        TokenOutcome::Consumed(c) => {
            assert_eq!(c.id, reg.id);
            assert_eq!(c.created_by.as_deref(), Some("ops@example.com"));
            assert_eq!(c.context_data.get("plan").map(String::as_str), Some("pro"));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        outcome(Purpose::Registration, reg_hash, app.id.clone(), t0()).await,
        TokenOutcome::Gone(ChallengeStatus::Consumed)
    ));
    assert!(
        store.user_by_email(&EmailAddress::parse("reg@example.com").unwrap()).await.unwrap().is_none(),
        "no user"
    );
    let (reg2, reg2_hash) = with_purpose(&app, Purpose::Registration, "reg2@example.com", t0());
    insert(&*store, &reg2, None).await;
    let code = NewAuthorizationCode::generate(&app, &key(), t0());
    assert!(
        matches!(store.consume_link(&reg2_hash, &code, t0()).await.unwrap(), ConsumeOutcome::NotFound),
        "a registration token is no sign-in link"
    );

    let (ver, ver_hash) = with_purpose(&app, Purpose::Verification, "ver@example.com", t0());
    insert(&*store, &ver, None).await;
    assert!(matches!(
        outcome(Purpose::Verification, ver_hash.clone(), app.id.clone(), ver.expires_at).await,
        TokenOutcome::Gone(ChallengeStatus::Expired)
    ));
    let tasks = (0..20).map(|_| outcome(Purpose::Verification, ver_hash.clone(), app.id.clone(), t0()));
    let won = futures_util::future::join_all(tasks)
        .await
        .into_iter()
        .filter(|o| matches!(o, TokenOutcome::Consumed(_)))
        .count();
    assert_eq!(won, 1);
}

/// An organization owning `domains`, named after its slug.
pub fn organization(slug: &str, domains: &[&str]) -> Organization {
    Organization {
        id: OrgId::generate(t0()),
        name: slug.to_uppercase(),
        slug: slug.into(),
        domains: domains.iter().map(|d| d.to_string()).collect(),
        created_at: t0(),
        updated_at: t0(),
    }
}

pub async fn organizations_round_trip_and_own_their_domains(store: Arc<dyn Store>) {
    let acme = organization("acme", &["acme.example", "acme.test"]);
    store.insert_organization(&acme).await.unwrap();
    let got = store.organization(&acme.id).await.unwrap().unwrap();
    assert_eq!(got, acme);
    assert_eq!(store.organization_by_slug("acme").await.unwrap().unwrap().id, acme.id);
    assert_eq!(store.organization_by_domain("acme.test").await.unwrap().unwrap().id, acme.id);
    assert!(store.organization_by_domain("other.example").await.unwrap().is_none());

    let same_slug = organization("acme", &[]);
    assert!(matches!(store.insert_organization(&same_slug).await, Err(crate::StoreError::Conflict(_))));
    let same_domain = organization("globex", &["acme.test"]);
    assert!(matches!(store.insert_organization(&same_domain).await, Err(crate::StoreError::Conflict(_))));
    assert!(store.organization_by_slug("globex").await.unwrap().is_none(), "nothing half-written");

    let globex = organization("globex", &["globex.example"]);
    store.insert_organization(&globex).await.unwrap();
    let mut changed = acme.clone();
    changed.domains = vec!["acme.example".into(), "acme.org".into()];
    changed.name = "Acme Inc".into();
    changed.updated_at = t0() + Duration::seconds(3);
    assert!(store.update_organization(&changed).await.unwrap());
    assert_eq!(store.organization(&acme.id).await.unwrap().unwrap(), changed);
    assert!(store.organization_by_domain("acme.test").await.unwrap().is_none(), "released");
    let mut stealing = globex.clone();
    stealing.domains.push("acme.org".into());
    assert!(matches!(store.update_organization(&stealing).await, Err(crate::StoreError::Conflict(_))));
    assert_eq!(
        store.organization(&globex.id).await.unwrap().unwrap().domains,
        vec!["globex.example".to_owned()]
    );

    let all = store.list_organizations().await.unwrap();
    assert_eq!(all.iter().map(|o| o.slug.as_str()).collect::<Vec<_>>(), ["acme", "globex"]);
    assert_eq!(all[0].domains, changed.domains);
    assert!(store.delete_organization(&acme.id).await.unwrap());
    assert!(store.organization_by_domain("acme.example").await.unwrap().is_none());
    assert!(!store.delete_organization(&acme.id).await.unwrap());
}

pub async fn a_sign_in_for_an_organization_makes_a_member_and_carries_its_id(store: Arc<dyn Store>) {
    let app = app_in(&*store, "Orgs").await;
    let acme = organization("acme", &["acme.example"]);
    store.insert_organization(&acme).await.unwrap();
    let (mut c, token) = challenge(&app, "ada@acme.example", t0());
    c.org_id = Some(acme.id.clone());
    insert(&*store, &c, None).await;
    let code = NewAuthorizationCode::generate(&app, &key(), t0());
    let ConsumeOutcome::Consumed { user, code: issued, .. } =
        store.consume_link(&link_hash(&token), &code, t0()).await.unwrap()
    else {
        panic!("consumed");
    };
    assert_eq!(issued.org_id.as_ref(), Some(&acme.id));
    assert_eq!(store.user_organizations(&user.id).await.unwrap(), vec![acme.id.clone()]);
    let redeemed =
        store.redeem_authorization_code(&issued.code_hash, &app.id, t0(), None).await.unwrap().unwrap();
    assert_eq!(redeemed.org_id, Some(acme.id.clone()));

    // A second sign-in keeps one membership; the refresh token carries the organization.
    let (mut c2, token2) = challenge(&app, "ada@acme.example", t0());
    c2.org_id = Some(acme.id.clone());
    insert(&*store, &c2, None).await;
    let code2 = NewAuthorizationCode::generate(&app, &key(), t0());
    store.consume_link(&link_hash(&token2), &code2, t0()).await.unwrap();
    assert_eq!(store.user_organizations(&user.id).await.unwrap().len(), 1);
    let (mut rt, rt_hash) = refresh(&app, &user, None, t0());
    rt.org_id = Some(acme.id.clone());
    store.insert_refresh_token(&rt, None).await.unwrap();
    assert_eq!(store.refresh_token(&rt_hash).await.unwrap().unwrap().org_id, Some(acme.id.clone()));
    let kinds: Vec<EventKind> = store.events(None, 100).await.unwrap().into_iter().map(|e| e.kind).collect();
    assert_eq!(kinds.iter().filter(|k| **k == EventKind::MembershipCreated).count(), 1);
}

/// An event as the suite compares it: kind, application, user, subject and parsed detail.
type Seen = (EventKind, Option<String>, Option<String>, Option<String>, Option<serde_json::Value>);

/// The events written since `cursor` (which moves past them), each checked to carry `at`.
async fn events_since(store: &dyn Store, cursor: &mut Option<String>, at: OffsetDateTime) -> Vec<Seen> {
    let events = store.events(cursor.as_deref(), 1000).await.unwrap();
    if let Some(last) = events.last() {
        *cursor = Some(last.id.as_str().to_owned());
    }
    events
        .into_iter()
        .map(|e| {
            assert_eq!(e.created_at, at, "{:?} written at the time of its step", e.kind);
            let detail = e.detail.as_deref().map(|d| serde_json::from_str(d).expect("the detail is JSON"));
            (e.kind, e.app_id.map(|a| a.into_string()), e.user_id.map(|u| u.into_string()), e.subject, detail)
        })
        .collect()
}

fn seen(
    kind: EventKind,
    app: &Application,
    user: Option<&User>,
    subject: Option<&str>,
    detail: Option<serde_json::Value>,
) -> Seen {
    (kind, Some(app.id.to_string()), user.map(|u| u.id.to_string()), subject.map(str::to_owned), detail)
}

pub async fn every_challenge_transition_writes_its_events(store: Arc<dyn Store>) {
    use serde_json::json;
    let app = app_in(&*store, "Transitions").await;
    let acme = organization("acme", &["acme.example"]);
    store.insert_organization(&acme).await.unwrap();
    let mut cursor = store.events(None, 1000).await.unwrap().last().map(|e| e.id.as_str().to_owned());
    let step = |s: i64| t0() + Duration::seconds(s);

    // Created, with its e-mail; then delivered.
    let (mut c, token, _) = challenge_with_otp(&app, "ada@acme.example", step(1));
    c.org_id = Some(acme.id.clone());
    let mail = mail_for(&app, &c);
    insert(&*store, &c, Some(&mail)).await;
    let created = seen(EventKind::ChallengeCreated, &app, None, Some(c.id.as_str()), None);
    assert_eq!(events_since(&*store, &mut cursor, step(1)).await, [created]);
    let claimed = store.claim_outbox(step(2), step(62), 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    store.outbox_sent(&[SentMail::direct(&mail.id)], step(2)).await.unwrap();
    let delivered = seen(EventKind::ChallengeDelivered, &app, None, Some(c.id.as_str()), None);
    assert_eq!(events_since(&*store, &mut cursor, step(2)).await, [delivered]);

    // Consumed by its link: a first sign-in for an organization.
    let code = NewAuthorizationCode::generate(&app, &key(), step(3));
    let ConsumeOutcome::Consumed { user, .. } =
        store.consume_link(&link_hash(&token), &code, step(3)).await.unwrap()
    else {
        panic!("consumed");
    };
    assert_eq!(
        events_since(&*store, &mut cursor, step(3)).await,
        [
            seen(
                EventKind::ChallengeConsumed,
                &app,
                Some(&user),
                Some(c.id.as_str()),
                Some(json!({ "method": "email" }))
            ),
            seen(EventKind::UserCreated, &app, Some(&user), None, None),
            seen(EventKind::MembershipCreated, &app, Some(&user), Some(acme.id.as_str()), None),
        ]
    );

    // A wrong code, then the right one: a returning user, no new user or membership.
    let (mut c2, _, otp) = challenge_with_otp(&app, "ada@acme.example", step(4));
    c2.org_id = Some(acme.id.clone());
    insert(&*store, &c2, None).await;
    events_since(&*store, &mut cursor, step(4)).await;
    let wrong = Otp::parse("000000").filter(|w| w != &otp).unwrap_or_else(|| Otp::parse("111111").unwrap());
    let hash = |otp: &Otp| key().hash(HashPurpose::Otp, &otp_subject(&c2.id, otp));
    assert!(matches!(
        store.consume_by_otp(&c2.id, &hash(&wrong), 5, step(5)).await.unwrap(),
        OtpOutcome::Wrong { attempts_left: 4 }
    ));
    let rejected = |c: &Challenge, attempts: u32| {
        let detail = json!({ "reason": "wrong_code", "attempts": attempts });
        seen(EventKind::ChallengeRejected, &app, None, Some(c.id.as_str()), Some(detail))
    };
    assert_eq!(events_since(&*store, &mut cursor, step(5)).await, [rejected(&c2, 1)]);
    assert!(matches!(
        store.consume_by_otp(&c2.id, &hash(&otp), 5, step(6)).await.unwrap(),
        OtpOutcome::Consumed { .. }
    ));
    let by_code = json!({ "method": "otp" });
    assert_eq!(
        events_since(&*store, &mut cursor, step(6)).await,
        [seen(EventKind::ChallengeConsumed, &app, Some(&user), Some(c2.id.as_str()), Some(by_code))]
    );

    // Burned by wrong codes: each attempt says so, the last one revokes without another event.
    let (burn, _, burn_otp) = challenge_with_otp(&app, "burn@example.com", step(7));
    insert(&*store, &burn, None).await;
    events_since(&*store, &mut cursor, step(7)).await;
    let burn_wrong =
        Otp::parse("000000").filter(|w| w != &burn_otp).unwrap_or_else(|| Otp::parse("111111").unwrap());
    let burn_hash = key().hash(HashPurpose::Otp, &otp_subject(&burn.id, &burn_wrong));
    for _ in 0..2 {
        store.consume_by_otp(&burn.id, &burn_hash, 2, step(8)).await.unwrap();
    }
    assert_eq!(events_since(&*store, &mut cursor, step(8)).await, [rejected(&burn, 1), rejected(&burn, 2)]);
    assert_eq!(
        store.challenge(&app.id, &burn.id).await.unwrap().unwrap().challenge.status,
        ChallengeStatus::Revoked
    );
    assert!(matches!(
        store.consume_by_otp(&burn.id, &burn_hash, 2, step(9)).await.unwrap(),
        OtpOutcome::Gone
    ));
    assert_eq!(events_since(&*store, &mut cursor, step(9)).await, [], "a spent challenge counts nothing");

    // Revoked by the application.
    let (revoked, _) = challenge(&app, "revoked@example.com", step(10));
    insert(&*store, &revoked, None).await;
    events_since(&*store, &mut cursor, step(10)).await;
    assert!(store.revoke_challenge(&app.id, &revoked.id, step(11)).await.unwrap());
    assert_eq!(
        events_since(&*store, &mut cursor, step(11)).await,
        [seen(EventKind::ChallengeRevoked, &app, None, Some(revoked.id.as_str()), None)]
    );

    // A verification link, consumed by its token.
    let (ver, ver_hash) = with_purpose(&app, Purpose::Verification, "ver@example.com", step(12));
    insert(&*store, &ver, None).await;
    events_since(&*store, &mut cursor, step(12)).await;
    assert!(matches!(
        store.consume_by_token(Purpose::Verification, &ver_hash, &app.id, step(13)).await.unwrap(),
        TokenOutcome::Consumed(_)
    ));
    let for_verification = json!({ "purpose": "verification" });
    assert_eq!(
        events_since(&*store, &mut cursor, step(13)).await,
        [seen(EventKind::ChallengeConsumed, &app, None, Some(ver.id.as_str()), Some(for_verification))]
    );

    // A registration, validated: consumed for its user, who is created.
    let (reg, reg_hash) = with_purpose(&app, Purpose::Registration, "reg@example.com", step(14));
    insert(&*store, &reg, None).await;
    events_since(&*store, &mut cursor, step(14)).await;
    let new_user = User::new(reg.email.clone(), step(15));
    let RegistrationOutcome::Consumed { user: registered, .. } =
        store.consume_registration(&reg_hash, &app.id, &new_user, step(15)).await.unwrap()
    else {
        panic!("registered");
    };
    let for_registration = json!({ "purpose": "registration" });
    assert_eq!(
        events_since(&*store, &mut cursor, step(15)).await,
        [
            seen(
                EventKind::ChallengeConsumed,
                &app,
                Some(&registered),
                Some(reg.id.as_str()),
                Some(for_registration)
            ),
            seen(EventKind::UserCreated, &app, Some(&registered), Some(reg.id.as_str()), None),
        ]
    );

    // A refresh token presented again after its rotation.
    let (first, first_hash) = refresh(&app, &user, None, step(16));
    store.insert_refresh_token(&first, None).await.unwrap();
    let (second, _) = refresh(&app, &user, Some(first.family_id.clone()), step(16));
    store.rotate_refresh_token(&first_hash, &app.id, &second, None, step(16)).await.unwrap();
    let (third, _) = refresh(&app, &user, Some(first.family_id.clone()), step(17));
    assert!(matches!(
        store.rotate_refresh_token(&first_hash, &app.id, &third, None, step(17)).await.unwrap(),
        RotateOutcome::Reused { .. }
    ));
    assert_eq!(
        events_since(&*store, &mut cursor, step(17)).await,
        [seen(EventKind::RefreshReuseDetected, &app, Some(&user), Some(first.family_id.as_str()), None)]
    );
}

/// A registration challenge, and the user its validation would create.
fn registration(app: &Application, email: &str, now: OffsetDateTime) -> (Challenge, Vec<u8>, User) {
    let (c, hash) = with_purpose(app, Purpose::Registration, email, now);
    let mut user = User::new(c.email.clone(), now);
    user.name = Some("Reg Istrant".into());
    user.locale = Some("fr".into());
    (c, hash, user)
}

pub async fn a_registration_creates_its_user_and_consumes_once(store: Arc<dyn Store>) {
    let app = app_in(&*store, "Register").await;
    let other = app_in(&*store, "Other").await;
    let (reg, hash, user) = registration(&app, "new@example.com", t0());
    insert(&*store, &reg, None).await;
    let (login, login_token) = challenge(&app, "login@example.com", t0());
    insert(&*store, &login, None).await;
    let now = t0() + Duration::seconds(20);

    assert!(matches!(
        store.consume_registration(&hash, &other.id, &user, now).await.unwrap(),
        RegistrationOutcome::NotFound
    ));
    assert!(
        matches!(
            store.consume_registration(&link_hash(&login_token), &app.id, &user, now).await.unwrap(),
            RegistrationOutcome::NotFound
        ),
        "a sign-in link is no registration"
    );
    assert!(store.user(&user.id).await.unwrap().is_none(), "nothing written for an unknown token");

    let RegistrationOutcome::Consumed { challenge: consumed, user: created } =
        store.consume_registration(&hash, &app.id, &user, now).await.unwrap()
    else {
        panic!("the first validation succeeds");
    };
    assert_eq!(
        (consumed.id.clone(), consumed.status, consumed.consumed_at),
        (reg.id.clone(), ChallengeStatus::Consumed, Some(now))
    );
    assert_eq!(consumed.created_by.as_deref(), Some("ops@example.com"));
    assert!(created.email_verified);
    let stored = store.user_by_email(&reg.email).await.unwrap().expect("the user exists");
    assert_eq!(
        (stored.id, stored.email_verified, stored.name, stored.locale, stored.created_at),
        (user.id.clone(), true, Some("Reg Istrant".to_owned()), Some("fr".to_owned()), t0())
    );
    let rec = store.challenge(&app.id, &reg.id).await.unwrap().unwrap();
    assert_eq!(rec.challenge.status, ChallengeStatus::Consumed);

    let again = User::new(reg.email.clone(), now);
    assert!(matches!(
        store.consume_registration(&hash, &app.id, &again, now).await.unwrap(),
        RegistrationOutcome::Gone(ChallengeStatus::Consumed)
    ));
    assert!(store.user(&again.id).await.unwrap().is_none());

    let (late, late_hash, late_user) = registration(&app, "late@example.com", t0());
    insert(&*store, &late, None).await;
    assert!(matches!(
        store.consume_registration(&late_hash, &app.id, &late_user, late.expires_at).await.unwrap(),
        RegistrationOutcome::Gone(ChallengeStatus::Expired)
    ));
    assert!(store.user(&late_user.id).await.unwrap().is_none());
}

pub async fn a_taken_address_leaves_the_registration_pending_and_writes_nothing(store: Arc<dyn Store>) {
    let app = app_in(&*store, "Taken").await;
    let (reg, hash, user) = registration(&app, "taken@example.com", t0());
    insert(&*store, &reg, None).await;
    // The address is taken between the start of the registration and its validation.
    let first = User::new(reg.email.clone(), t0());
    store.insert_user(&first).await.unwrap();
    let before = store.events(None, 1000).await.unwrap().len();

    let now = t0() + Duration::seconds(5);
    assert!(matches!(
        store.consume_registration(&hash, &app.id, &user, now).await.unwrap(),
        RegistrationOutcome::EmailTaken
    ));
    let rec = store.challenge(&app.id, &reg.id).await.unwrap().unwrap();
    assert_eq!((rec.challenge.status, rec.challenge.consumed_at), (ChallengeStatus::Pending, None));
    assert!(store.user(&user.id).await.unwrap().is_none());
    assert_eq!(store.user_by_email(&reg.email).await.unwrap().unwrap().id, first.id);
    assert_eq!(store.events(None, 1000).await.unwrap().len(), before, "no event either");

    // Once the address is free again, the same registration goes through.
    assert!(store.delete_user(&first.id).await.unwrap());
    assert!(matches!(
        store.consume_registration(&hash, &app.id, &user, now).await.unwrap(),
        RegistrationOutcome::Consumed { .. }
    ));
    assert_eq!(store.user_by_email(&reg.email).await.unwrap().unwrap().id, user.id);
}

pub async fn concurrent_registrations_have_one_winner(store: Arc<dyn Store>) {
    let app = app_in(&*store, "RegRace").await;
    let (reg, hash, _) = registration(&app, "race@example.com", t0());
    insert(&*store, &reg, None).await;
    let tasks = (0..20).map(|_| {
        let (store, hash, app_id) = (store.clone(), hash.clone(), app.id.clone());
        let user = User::new(reg.email.clone(), t0());
        async move { store.consume_registration(&hash, &app_id, &user, t0()).await }
    });
    let results = futures_util::future::join_all(tasks).await;
    let winners: Vec<_> = results
        .iter()
        .filter_map(|r| match r {
            Ok(RegistrationOutcome::Consumed { user, .. }) => Some(user.id.clone()),
            _ => None,
        })
        .collect();
    let lost = results
        .iter()
        .filter(|r| matches!(r, Ok(RegistrationOutcome::Gone(ChallengeStatus::Consumed))))
        .count();
    assert_eq!((winners.len(), lost), (1, 19), "{results:?}");
    assert_eq!(store.user_by_email(&reg.email).await.unwrap().unwrap().id, winners[0]);
    let created =
        store.events(None, 1000).await.unwrap().iter().filter(|e| e.kind == EventKind::UserCreated).count();
    assert_eq!(created, 1);
}

fn hosted_request(
    app: &Application,
    c: &Challenge,
    now: OffsetDateTime,
) -> latchkey_core::hosted::HostedRequest {
    latchkey_core::hosted::HostedRequest {
        id: latchkey_core::id::HostedRequestId::generate(now),
        app_id: app.id.clone(),
        challenge_id: c.id.clone(),
        browser_hash: key().hash(HashPurpose::BrowserCookie, "browser"),
        match_number: 42,
        choices: [17, 42, 88],
        status: latchkey_core::hosted::HostedStatus::Waiting,
        ip: Some("192.0.2.7".into()),
        user_agent: Some("agent".into()),
        locale: Some("fr".into()),
        restart: Some("/oauth/authorize?client_id=x".into()),
        user_id: None,
        auth_method: None,
        auth_time: None,
        created_at: now,
        expires_at: c.expires_at,
    }
}

pub async fn hosted_requests_move_once_from_status_to_status(store: Arc<dyn Store>) {
    use latchkey_core::hosted::{HostedStatus, SignedIn};
    let app = app_in(&*store, "Hosted").await;
    let (c, token) = challenge(&app, "hosted@example.com", t0());
    insert(&*store, &c, None).await;
    let request = hosted_request(&app, &c, t0());
    store.insert_hosted_request(&request).await.unwrap();
    let read = store.hosted_request(&request.id).await.unwrap().expect("stored");
    assert_eq!(read.choices, [17, 42, 88]);
    assert_eq!(read.match_number, 42);
    assert_eq!(read.locale.as_deref(), Some("fr"));
    assert_eq!(read.restart, request.restart);
    let (by_link, hosted) =
        store.challenge_and_hosted_request_by_link(&link_hash(&token)).await.unwrap().expect("by link");
    assert_eq!((by_link.id, hosted.expect("hosted").id), (c.id.clone(), request.id.clone()));
    let (ordinary, _) = challenge(&app, "ordinary@example.com", t0());
    insert(&*store, &ordinary, None).await;
    let found = store.challenge_and_hosted_request_by_link(&ordinary.link_hash).await.unwrap();
    assert!(found.is_some_and(|(c, hosted)| c.id == ordinary.id && hosted.is_none()));
    assert!(store.challenge_and_hosted_request_by_link(&link_hash("nope")).await.unwrap().is_none());

    let code = NewAuthorizationCode::generate(&app, &key(), t0());
    let ConsumeOutcome::Consumed { user, .. } =
        store.consume_link(&link_hash(&token), &code, t0()).await.unwrap()
    else {
        panic!("consumed");
    };
    let signed_in = SignedIn { user_id: user.id.clone(), auth_method: AuthMethod::Otp, auth_time: t0() };
    // Of concurrent moves from `waiting`, one wins.
    let tasks = (0..20).map(|_| {
        let (store, id, signed_in) = (store.clone(), request.id.clone(), signed_in.clone());
        async move {
            store
                .advance_hosted_request(
                    &id,
                    HostedStatus::Waiting,
                    HostedStatus::Approved,
                    Some(&signed_in),
                    t0(),
                )
                .await
                .unwrap()
        }
    });
    let moved: Vec<_> = futures_util::future::join_all(tasks).await.into_iter().flatten().collect();
    assert_eq!(moved.len(), 1);
    assert_eq!(moved[0].status, HostedStatus::Approved);
    assert_eq!(moved[0].user_id.as_ref(), Some(&user.id));
    assert_eq!(moved[0].auth_method, Some(AuthMethod::Otp));
    assert_eq!(moved[0].auth_time, Some(t0()));
    assert!(
        store
            .advance_hosted_request(&request.id, HostedStatus::Waiting, HostedStatus::Declined, None, t0())
            .await
            .unwrap()
            .is_none(),
        "no longer waiting"
    );
    let done = store
        .advance_hosted_request(&request.id, HostedStatus::Approved, HostedStatus::Completed, None, t0())
        .await
        .unwrap()
        .expect("approved, then completed");
    assert_eq!(done.user_id.as_ref(), Some(&user.id), "who signed in is kept");

    // An expired request moves no more.
    let (c2, _) = challenge(&app, "late@example.com", t0());
    insert(&*store, &c2, None).await;
    let late = hosted_request(&app, &c2, t0());
    store.insert_hosted_request(&late).await.unwrap();
    let after = late.expires_at;
    assert!(
        store
            .advance_hosted_request(&late.id, HostedStatus::Waiting, HostedStatus::Cancelled, None, after)
            .await
            .unwrap()
            .is_none()
    );

    // A code issued without consuming a link redeems like any other.
    let plain = NewAuthorizationCode::generate(&app, &key(), t0());
    let issued = plain.issued_for(&c, &user.id, t0());
    store.insert_authorization_code(&issued).await.unwrap();
    let (found, found_user) =
        store.authorization_code(&issued.code_hash).await.unwrap().expect("stored code");
    assert_eq!(found_user.id, user.id);
    assert_eq!(found.nonce.as_deref(), Some("n-1"));
    assert!(store.redeem_authorization_code(&issued.code_hash, &app.id, t0(), None).await.unwrap().is_some());
}

pub async fn browser_sessions_are_found_listed_and_revoked(store: Arc<dyn Store>) {
    use latchkey_core::hosted::BrowserSession;
    let app = app_in(&*store, "Sessions").await;
    let (c, token) = challenge(&app, "session@example.com", t0());
    insert(&*store, &c, None).await;
    let code = NewAuthorizationCode::generate(&app, &key(), t0());
    let ConsumeOutcome::Consumed { user, .. } =
        store.consume_link(&link_hash(&token), &code, t0()).await.unwrap()
    else {
        panic!("consumed");
    };
    let session = |name: &str, lifetime: Duration| BrowserSession {
        id: latchkey_core::id::BrowserSessionId::generate(t0()),
        token_hash: key().hash(HashPurpose::SessionCookie, name),
        user_id: user.id.clone(),
        challenge_id: c.id.clone(),
        auth_method: AuthMethod::Link,
        auth_time: t0(),
        created_at: t0(),
        expires_at: t0() + lifetime,
        revoked_at: None,
    };
    let (a, b) = (session("a", Duration::days(7)), session("b", Duration::hours(1)));
    store.insert_browser_session(&a).await.unwrap();
    store.insert_browser_session(&b).await.unwrap();
    let found = store.browser_session(&a.token_hash, t0()).await.unwrap().expect("active");
    assert_eq!(found.user_id, user.id);
    assert_eq!(found.auth_method, AuthMethod::Link);
    assert_eq!(store.user_browser_sessions(&user.id, t0()).await.unwrap().len(), 2);
    let later = t0() + Duration::hours(2);
    assert!(store.browser_session(&b.token_hash, later).await.unwrap().is_none(), "expired");
    assert_eq!(store.user_browser_sessions(&user.id, later).await.unwrap().len(), 1);

    assert!(store.revoke_browser_session(&a.token_hash, t0()).await.unwrap());
    assert!(!store.revoke_browser_session(&a.token_hash, t0()).await.unwrap(), "once");
    assert!(store.browser_session(&a.token_hash, t0()).await.unwrap().is_none());

    // Revoking a user's sessions takes the browser sessions too.
    let c3 = session("c", Duration::days(1));
    store.insert_browser_session(&c3).await.unwrap();
    assert!(store.revoke_user_sessions(&user.id, t0()).await.unwrap() >= 2);
    assert!(store.user_browser_sessions(&user.id, t0()).await.unwrap().is_empty());
}
