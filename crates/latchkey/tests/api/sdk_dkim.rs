//! DKIM: every message is signed for its sender's domain, checked by dkimpy (a verifier we did
//! not write, `tests/sdk/dkim/verify.py`) against the TXT records `latchkey mail dns` prints,
//! handed to it as its DNS. Needs dkimpy installed by `crates/latchkey/tests/sdk/dkim/install.sh`;
//! run without it, a case fails saying so.

use crate::helpers::{Backend, CALLBACK, TestApp, random_email};
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

const NEEDS: &str = "needs dkimpy (crates/latchkey/tests/sdk/dkim/install.sh)";

mod sqlite {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs dkimpy (crates/latchkey/tests/sdk/dkim/install.sh)"]
    async fn every_message_is_signed_for_its_senders_domain() {
        super::every_message_is_signed_for_its_senders_domain(crate::helpers::Backend::Sqlite, "rsa-sha256")
            .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs dkimpy (crates/latchkey/tests/sdk/dkim/install.sh)"]
    async fn ed25519_signatures_verify_too() {
        super::every_message_is_signed_for_its_senders_domain(
            crate::helpers::Backend::Sqlite,
            "ed25519-sha256",
        )
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs dkimpy (crates/latchkey/tests/sdk/dkim/install.sh)"]
    async fn a_configured_pem_key_signs() {
        super::a_configured_pem_key_signs(crate::helpers::Backend::Sqlite).await;
    }
}

mod postgres {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs dkimpy (crates/latchkey/tests/sdk/dkim/install.sh) and LATCHKEY_TEST_DATABASE_URL (PostgreSQL)"]
    async fn every_message_is_signed_for_its_senders_domain() {
        super::every_message_is_signed_for_its_senders_domain(
            crate::helpers::Backend::Postgres,
            "rsa-sha256",
        )
        .await;
    }
}

fn python() -> PathBuf {
    let python = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/sdk/venv/bin/python");
    let installed = Command::new(&python)
        .args(["-c", "import dkim, nacl"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(installed, "{NEEDS}: dkimpy is not installed in {}", python.display());
    python
}

/// dkimpy's verdict on `message`, given `dns` (owner name → TXT value) as the whole DNS.
fn verify(message: &str, dns: &BTreeMap<String, String>) -> (bool, String) {
    let mut child = Command::new(python())
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/sdk/dkim/verify.py"))
        .env("DKIM_DNS", serde_json::to_string(dns).unwrap())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the verifier starts");
    child.stdin.take().unwrap().write_all(message.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), said)
}

/// The records `latchkey mail dns` prints for this server's database and settings, by name.
fn published_records(app: &TestApp) -> (BTreeMap<String, String>, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_latchkey"));
    command.args(["mail", "dns"]).env_clear().env("PATH", std::env::var_os("PATH").unwrap_or_default());
    let c = &app.config;
    command
        .env("LATCHKEY_DATABASE_URL", &c.database_url)
        .env("LATCHKEY_SECRET_KEY", c.secret_key.as_deref().unwrap())
        .env("LATCHKEY_MAIL_FROM", &c.mail_from)
        .env("LATCHKEY_DKIM_SELECTOR", &c.dkim_selector)
        .env("LATCHKEY_SMTP_URL", c.smtp_url.as_deref().unwrap());
    if let Some(file) = &c.dkim_private_key_file {
        command.env("LATCHKEY_DKIM_PRIVATE_KEY_FILE", file);
    }
    let out = command.output().expect("latchkey mail dns runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let mut records = BTreeMap::new();
    for line in stdout.lines().filter(|l| !l.starts_with(';')) {
        let (name, rest) = line.split_once(". IN TXT ").unwrap_or_else(|| panic!("not a record: {line}"));
        let value: String = rest.split('"').skip(1).step_by(2).collect();
        records.insert(name.to_owned(), value);
    }
    (records, stdout)
}

async fn every_message_is_signed_for_its_senders_domain(backend: Backend, algorithm: &'static str) {
    let app = TestApp::spawn_with(backend, |c| {
        c.mail_from = "Acme <login@acme.example>".into();
        c.dkim_algorithm = algorithm.into();
    })
    .await;
    let plain = app.client().await;
    let branded = app
        .create_client(json!({
            "name": "Brand", "redirect_uris": [CALLBACK],
            "branding": { "sender_name": "Brand", "sender_email": "hello@Brand.example" },
        }))
        .await;
    for client in [&plain, &branded] {
        let res = app.request_link(client, json!({ "email": random_email() })).await;
        assert_eq!(res.status(), StatusCode::CREATED);
    }
    let mails = app.wait_for_mails(2).await;
    let (dns, printed) = published_records(&app);
    let key_type = if algorithm == "rsa-sha256" { "k=rsa;" } else { "k=ed25519;" };
    for domain in ["acme.example", "brand.example"] {
        let dkim = &dns[&format!("latchkey._domainkey.{domain}")];
        assert!(dkim.starts_with("v=DKIM1;") && dkim.contains(key_type), "{printed}");
        assert!(dns[domain].starts_with("v=spf1 ip4:127.0.0.1 "), "{printed}");
        assert!(dns[&format!("_dmarc.{domain}")].starts_with("v=DMARC1; p="), "{printed}");
    }

    for mail in &mails {
        let domain = if mail.mail_from.ends_with("@acme.example") { "acme.example" } else { "brand.example" };
        let (ok, said) = verify(&mail.data, &dns);
        assert!(ok, "dkimpy: {said}\n{}", mail.data);
        assert!(said.starts_with(&format!("pass d={domain} s=latchkey a={algorithm}")), "{said}");
        // The checks every message passed before still hold with the signature on top.
        assert!(mail.header("Message-ID").is_some() && mail.header("Date").is_some());
        assert!(mail.header("Content-Type").unwrap().starts_with("multipart/alternative"));
        // A message changed on the way no longer verifies.
        let (ok, said) = verify(&mail.data.replace("/l/", "/x/"), &dns);
        assert!(!ok, "a changed body must fail: {said}");
    }

    // A restart keeps the key: what was published stays right.
    let mut app = app;
    app.start(false).await;
    let (again, _) = published_records(&app);
    assert_eq!(again, dns);
    let res = app.request_link(&plain, json!({ "email": random_email() })).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let mails = app.wait_for_mails(3).await;
    let (ok, said) = verify(&mails[2].data, &dns);
    assert!(ok, "after a restart: {said}");
    let _ = app.admin(Method::GET, "/healthz", None).await;
}

async fn a_configured_pem_key_signs(backend: Backend) {
    // A PKCS#1 RSA key, as `openssl genrsa -traditional` writes it.
    let dir = tempfile::tempdir().unwrap();
    let pem_path = dir.path().join("dkim.pem");
    let out = Command::new("openssl")
        .args(["genrsa", "-traditional", "2048"])
        .output()
        .expect("openssl (Debian's openssl package) runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::write(&pem_path, &out.stdout).unwrap();
    let file = pem_path.clone();
    let app = TestApp::spawn_with(backend, move |c| {
        c.mail_from = "Acme <login@acme.example>".into();
        c.dkim_selector = "mail2026".into();
        c.dkim_private_key_file = Some(file);
    })
    .await;
    let client = app.client().await;
    let res = app.request_link(&client, json!({ "email": random_email() })).await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let mails = app.wait_for_mails(1).await;
    let (dns, printed) = published_records(&app);
    assert!(dns.contains_key("mail2026._domainkey.acme.example"), "{printed}");
    let (ok, said) = verify(&mails[0].data, &dns);
    assert!(ok, "dkimpy: {said}");
    assert!(said.starts_with("pass d=acme.example s=mail2026 a=rsa-sha256"), "{said}");
}
