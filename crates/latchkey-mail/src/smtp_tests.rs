//! [`SmtpMailer`] against the in-process [`SmtpSink`]: real SMTP conversations, in plain text,
//! STARTTLS and implicit TLS, with authentication, reuse, refusals, drops, stalls and outages.

use crate::sink::{SinkAuth, SinkConfig, SinkMode, SinkTls, SmtpSink};
use crate::{Email, Mailer, SmtpConfigError, SmtpMailer, SmtpOptions};
use std::time::{Duration, Instant};

fn email(n: usize) -> Email {
    Email {
        from: crate::compose::sender(Some("Acme, Inc."), Some("no-reply@acme.example"), "x@y.example"),
        to: "ada@example.com".into(),
        subject: format!("Votre lien de connexion à Acme n°{n}"),
        text: format!("Voilà: {} end\nhttp://127.0.0.1:8080/l/abc=def\n", "x".repeat(120)),
        html: "<p>Hi &amp; bye</p>".into(),
        message_id: format!("msg_{n}@latchkey.example"),
    }
}

fn options(sink: &SmtpSink) -> SmtpOptions {
    SmtpOptions {
        timeout: Duration::from_secs(5),
        ca_pem: sink.ca_pem().map(|p| p.as_bytes().to_vec()),
        ..SmtpOptions::default()
    }
}

async fn sink(tls: SinkTls, auth: Option<SinkAuth>) -> SmtpSink {
    SmtpSink::start_with(SinkConfig { tls, auth, ..Default::default() }).await.unwrap()
}

#[tokio::test]
async fn a_message_goes_out_as_it_should_look_in_an_inbox() {
    let sink = SmtpSink::start().await.unwrap();
    let mailer = SmtpMailer::from_url(&sink.url(), options(&sink)).unwrap();
    let reply = mailer.send(&email(1)).await.unwrap();
    assert!(reply.starts_with("250"), "{reply}");
    let m = &sink.wait_for(1, Duration::from_secs(5)).await[0];
    assert_eq!(m.rcpt_to, vec!["ada@example.com".to_owned()]);
    assert_eq!(m.mail_from, "no-reply@acme.example");
    assert_eq!(m.header("Message-ID").as_deref(), Some("<msg_1@latchkey.example>"));
    assert!(m.header("Date").is_some());
    assert_eq!(m.header("Auto-Submitted").as_deref(), Some("auto-generated"));
    assert!(m.header("Content-Type").unwrap().starts_with("multipart/alternative"));
    assert_eq!(m.subject().as_deref(), Some("Votre lien de connexion à Acme n°1"));
    assert_eq!(m.decoded_header("From").as_deref(), Some("Acme, Inc. <no-reply@acme.example>"));
    assert!(m.text().contains(&format!("Voilà: {} end", "x".repeat(120))), "{}", m.data);
    assert!(m.text().contains("http://127.0.0.1:8080/l/abc=def"));
    assert_eq!(m.html().trim(), "<p>Hi &amp; bye</p>");
    assert!(!m.tls && m.user.is_none());
}

#[tokio::test]
async fn starttls_with_a_private_ca_and_authentication() {
    let sink = sink(SinkTls::StartTls, Some(SinkAuth::new("alice", "s3cret:/@"))).await;
    assert!(sink.url().starts_with("smtp://alice:s3cret%3A%2F%40@127.0.0.1:"), "{}", sink.url());
    let mailer = SmtpMailer::from_url(&sink.url(), options(&sink)).unwrap();
    assert!(mailer.describe().contains("STARTTLS required"), "{}", mailer.describe());
    mailer.send(&email(1)).await.unwrap();
    let m = &sink.wait_for(1, Duration::from_secs(5)).await[0];
    assert!(m.tls, "the message went over TLS");
    assert_eq!(m.user.as_deref(), Some("alice"));
}

#[tokio::test]
async fn implicit_tls_with_login_authentication() {
    let auth = SinkAuth { mechanisms: vec!["LOGIN"], ..SinkAuth::new("bob", "pw") };
    let sink = sink(SinkTls::Implicit, Some(auth)).await;
    assert!(sink.url().starts_with("smtps://"));
    let mailer = SmtpMailer::from_url(&sink.url(), options(&sink)).unwrap();
    mailer.send(&email(1)).await.unwrap();
    let m = &sink.wait_for(1, Duration::from_secs(5)).await[0];
    assert!(m.tls);
    assert_eq!(m.user.as_deref(), Some("bob"));
}

#[tokio::test]
async fn a_certificate_from_an_unknown_ca_is_refused_and_retried_later() {
    for tls in [SinkTls::StartTls, SinkTls::Implicit] {
        let sink = sink(tls, None).await;
        let untrusted = SmtpOptions { ca_pem: None, ..options(&sink) };
        let mailer = SmtpMailer::from_url(&sink.url(), untrusted).unwrap();
        let err = mailer.send(&email(1)).await.unwrap_err();
        assert!(!err.permanent, "{err:?}");
        assert!(err.message.to_lowercase().contains("certificate"), "{err:?}");
        assert!(sink.mails().is_empty());
    }
}

#[tokio::test]
async fn credentials_are_never_sent_without_tls_on_smtp_urls() {
    // The server offers AUTH but no STARTTLS: an smtp:// URL with credentials must not go on.
    let sink = sink(SinkTls::None, Some(SinkAuth::new("alice", "pw"))).await;
    let url = sink.url().replace("smtp+plain://", "smtp://");
    let mailer = SmtpMailer::from_url(&url, options(&sink)).unwrap();
    let err = mailer.send(&email(1)).await.unwrap_err();
    assert!(!err.permanent, "{err:?}");
    assert_eq!(sink.auth_failures(), 0);
    assert!(sink.mails().is_empty());
    // smtp+plain:// says it is a local relay: authentication in clear is then allowed.
    let mailer = SmtpMailer::from_url(&sink.url(), options(&sink)).unwrap();
    mailer.send(&email(2)).await.unwrap();
    assert_eq!(sink.wait_for(1, Duration::from_secs(5)).await[0].user.as_deref(), Some("alice"));
}

#[tokio::test]
async fn wrong_credentials_are_a_temporary_failure() {
    let sink = sink(SinkTls::StartTls, Some(SinkAuth::new("alice", "right"))).await;
    let url = sink.url().replace(":right@", ":wrong@");
    let mailer = SmtpMailer::from_url(&url, options(&sink)).unwrap();
    let err = mailer.send(&email(1)).await.unwrap_err();
    assert!(err.message.contains("535"), "{err:?}");
    assert!(!err.permanent, "the operator can fix the password; the message waits");
    assert_eq!(sink.auth_failures(), 1);
}

#[tokio::test]
async fn connections_are_reused_and_replaced_when_closed() {
    let sink = sink(SinkTls::StartTls, Some(SinkAuth::new("alice", "pw"))).await;
    let mailer = SmtpMailer::from_url(&sink.url(), options(&sink)).unwrap();
    for n in 0..5 {
        mailer.send(&email(n)).await.unwrap();
        // The pool takes a connection back in a task of its own, as the worker records the outcome.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(sink.wait_for(5, Duration::from_secs(5)).await.len(), 5);
    assert_eq!(sink.connections(), 1, "one connection, one TLS handshake, one AUTH for five messages");

    // The server closes idle connections: the next message opens a new one, first time.
    sink.close_connections();
    mailer.send(&email(6)).await.unwrap();
    assert_eq!(sink.connections(), 2);
}

#[tokio::test]
async fn refusals_are_temporary_or_permanent_as_the_server_says() {
    let sink = SmtpSink::start().await.unwrap();
    let mailer = SmtpMailer::from_url(&sink.url(), options(&sink)).unwrap();
    sink.set_mode(SinkMode::RefusePermanently);
    let err = mailer.deliver(&email(1)).await.unwrap_err();
    assert!(err.permanent && err.message.contains("550"), "{err:?}");
    sink.set_mode(SinkMode::RefuseTemporarily);
    let err = mailer.deliver(&email(1)).await.unwrap_err();
    assert!(!err.permanent && err.message.contains("451"), "{err:?}");
    sink.set_mode(SinkMode::Accept);
    mailer.deliver(&email(1)).await.unwrap();
    assert_eq!(sink.mails().len(), 1);
}

#[tokio::test]
async fn concurrent_deliveries_keep_their_connections_for_the_next_ones() {
    let sink = SmtpSink::start().await.unwrap();
    let mailer = SmtpMailer::from_url(&sink.url(), options(&sink)).unwrap();
    let round = |from: usize| {
        let mailer = &mailer;
        futures_util::future::join_all(
            (from..from + 32).map(move |n| async move { mailer.send(&email(n)).await }),
        )
    };
    assert!(round(0).await.iter().all(Result::is_ok));
    tokio::time::sleep(Duration::from_millis(50)).await;
    let opened = sink.connections();
    assert!(round(100).await.iter().all(Result::is_ok));
    assert_eq!(sink.wait_for(64, Duration::from_secs(5)).await.len(), 64);
    assert_eq!(sink.connections(), opened, "the second round reuses the first round's connections");
}

#[tokio::test]
async fn a_connection_dropped_mid_conversation_is_retried() {
    let sink = SmtpSink::start().await.unwrap();
    let mailer = SmtpMailer::from_url(&sink.url(), options(&sink)).unwrap();
    sink.set_mode(SinkMode::Drop);
    let err = mailer.deliver(&email(1)).await.unwrap_err();
    assert!(!err.permanent, "{err:?}");
    sink.set_mode(SinkMode::Accept);
    mailer.deliver(&email(1)).await.unwrap();
    assert_eq!(sink.mails().len(), 1);
}

#[tokio::test]
async fn a_server_that_never_answers_costs_one_attempt_not_the_worker() {
    let sink = SmtpSink::start().await.unwrap();
    let quick = SmtpOptions { timeout: Duration::from_millis(500), ..options(&sink) };
    let mailer = SmtpMailer::from_url(&sink.url(), quick).unwrap();
    sink.set_mode(SinkMode::Stall);
    let started = Instant::now();
    let err = mailer.deliver(&email(1)).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    assert!(!err.permanent && err.message.contains("did not finish"), "{err:?}");
    // The stalled connection is not reused: the next message goes out on a new one.
    sink.set_mode(SinkMode::Accept);
    mailer.deliver(&email(2)).await.unwrap();
    assert_eq!(sink.mails().len(), 1);
    assert_eq!(sink.connections(), 2);
}

#[tokio::test]
async fn a_server_down_for_a_while_is_reached_once_it_is_back() {
    let sink = SmtpSink::start().await.unwrap();
    let mailer = SmtpMailer::from_url(&sink.url(), options(&sink)).unwrap();
    mailer.deliver(&email(1)).await.unwrap();
    sink.pause();
    let err = mailer.deliver(&email(2)).await.unwrap_err();
    assert!(!err.permanent, "{err:?}");
    sink.resume().unwrap();
    mailer.deliver(&email(3)).await.unwrap();
    let ids: Vec<String> = sink.mails().iter().filter_map(|m| m.header("Message-ID")).collect();
    assert_eq!(ids, ["<msg_1@latchkey.example>", "<msg_3@latchkey.example>"]);
}

#[tokio::test]
async fn bad_settings_are_refused_at_start() {
    let bad = |url: &str, ca: Option<&[u8]>| {
        SmtpMailer::from_url(url, SmtpOptions { ca_pem: ca.map(<[u8]>::to_vec), ..SmtpOptions::default() })
            .unwrap_err()
    };
    assert!(matches!(
        bad("smtp.example.com:25", None),
        SmtpConfigError::Url | SmtpConfigError::Scheme | SmtpConfigError::Host
    ));
    assert!(matches!(bad("http://smtp.example.com", None), SmtpConfigError::Scheme));
    assert!(matches!(bad("smtp://smtp.example.com", Some(b"not a certificate")), SmtpConfigError::CaFile));
    let ok = SmtpMailer::from_url("smtp://u:p@smtp.example.com", SmtpOptions::default()).unwrap();
    assert_eq!(ok.describe(), "smtp://smtp.example.com:587 (STARTTLS required, authenticated)");
    assert!(!format!("{ok:?}").contains(":p@"), "no password in Debug");
}

#[tokio::test]
async fn a_relay_that_refuses_connections_or_answers_4xx_is_skipped_for_the_next() {
    let first = SmtpSink::start().await.unwrap();
    let second = SmtpSink::start().await.unwrap();
    let urls = format!("{}, {}", first.url(), second.url());
    let mailer = SmtpMailer::from_url(&urls, options(&first)).unwrap();
    assert!(mailer.describe().contains(", else smtp+plain://"), "{}", mailer.describe());

    mailer.deliver(&email(1)).await.unwrap();
    assert_eq!((first.mails().len(), second.mails().len()), (1, 0), "the first relay is preferred");

    first.pause();
    mailer.deliver(&email(2)).await.unwrap();
    assert_eq!(
        second.wait_for(1, Duration::from_secs(5)).await.len(),
        1,
        "refused connections: the next relay"
    );

    first.resume().unwrap();
    first.set_mode(SinkMode::RefuseTemporarily);
    mailer.deliver(&email(3)).await.unwrap();
    assert_eq!(second.mails().len(), 2, "a 4xx: the next relay");

    // A 5xx is about the message: the next relay is not asked.
    first.set_mode(SinkMode::RefusePermanently);
    let err = mailer.deliver(&email(4)).await.unwrap_err();
    assert!(err.permanent && err.message.contains("550"), "{err:?}");
    assert_eq!(second.mails().len(), 2);

    // Every relay failing for the moment: a temporary failure, retried later.
    second.pause();
    first.set_mode(SinkMode::RefuseTemporarily);
    let err = mailer.deliver(&email(5)).await.unwrap_err();
    assert!(!err.permanent, "{err:?}");
}
