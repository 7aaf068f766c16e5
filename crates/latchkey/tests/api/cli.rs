//! The command line: administration without the API, and the health check.

use crate::helpers::{Backend, TestApp};
use serde_json::{Value, json};
use std::process::Command;

fn latchkey(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_latchkey"))
        .args(args)
        .current_dir(dir)
        .env("LATCHKEY_DATABASE_URL", format!("sqlite://{}", dir.join("cli.db").display()))
        .env("LATCHKEY_LOG", "warn")
        .output()
        .expect("the binary runs")
}

#[test]
fn applications_are_created_and_listed_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = latchkey(dir.path(), &["migrate"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(dir.path().join("cli.secret").exists(), "the master secret is generated beside the database");

    let out = latchkey(
        dir.path(),
        &["app", "create", "--name", "Shop", "--redirect-uri", "https://shop.example/cb", "--json"],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let created: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(created["client_secret"].as_str().unwrap().starts_with("lks_"));
    assert_eq!(created["default_redirect_uri"], "https://shop.example/cb");

    let out = latchkey(dir.path(), &["app", "list", "--json"]);
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list[0]["client_id"], created["client_id"]);
    assert!(list[0].get("client_secret").is_none());

    let out = latchkey(dir.path(), &["app", "create", "--name", "Bad", "--redirect-uri", "not a url"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("redirect_uris"));

    let out = latchkey(dir.path(), &["keys", "rotate", "--alg", "EdDSA"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("EdDSA now signs with key key_"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthcheck_answers_for_a_running_server_and_fails_without_one() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let dir = tempfile::tempdir().unwrap();
    let base = app.base.clone();
    let ok = tokio::task::spawn_blocking({
        let dir = dir.path().to_owned();
        move || latchkey(&dir, &["healthcheck", "--url", &base])
    })
    .await
    .unwrap();
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    let down = latchkey(dir.path(), &["healthcheck", "--url", "http://127.0.0.1:9"]);
    assert!(!down.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_while_the_server_runs_restores_and_signs_in() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let client = app.client().await;
    app.sign_in(&client).await;
    let copy_dir = tempfile::tempdir().unwrap();
    let copy = copy_dir.path().join("copy.db");
    let backup = |to: &std::path::Path| {
        Command::new(env!("CARGO_BIN_EXE_latchkey"))
            .args(["backup", to.to_str().unwrap()])
            .env("LATCHKEY_DATABASE_URL", &app.config.database_url)
            .env("LATCHKEY_SECRET_KEY", app.config.secret_key.as_deref().unwrap())
            .env("LATCHKEY_LOG", "warn")
            .output()
            .expect("the binary runs")
    };
    let out = backup(&copy);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&copy).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the copy holds user data: owner-only");
    }
    // It never overwrites.
    let again = backup(&copy);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists already"));

    // A server on the copy knows the application, its secret and the signing keys.
    let url = format!("sqlite://{}", copy.display());
    let restored = TestApp::spawn_with(Backend::Sqlite, |c| c.database_url = url).await;
    let tokens = restored.sign_in(&client).await;
    assert!(tokens["id_token"].is_string(), "{tokens}");
}

/// `latchkey migrate-data --to postgres://…`: a server moved from SQLite to PostgreSQL keeps its
/// applications, users, sessions, keys and history, and refuses to copy into a database that
/// holds data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs LATCHKEY_TEST_DATABASE_URL (PostgreSQL)"]
async fn data_moves_from_sqlite_to_postgres_and_sessions_survive() {
    let target = latchkey_postgres::testing::TestDatabase::from_env().await;
    let mut app = TestApp::spawn(Backend::Sqlite).await;
    let client = app.client().await;
    let tokens = app.sign_in(&client).await;
    let refresh = tokens["refresh_token"].as_str().unwrap().to_owned();
    let kid = |tokens: &Value| crate::helpers::header(tokens["id_token"].as_str().unwrap())["kid"].clone();
    let kid_before = kid(&tokens);
    let org = json!({ "name": "Moved", "slug": "moved", "domains": ["moved.example"] });
    assert_eq!(app.admin(reqwest::Method::POST, "/v1/organizations", Some(org)).await.status(), 201);
    // A sign-in by e-mail leaves a delivered message and a link's views behind.
    let created = app.request_link(&client, json!({ "email": "mover@moved.example" })).await;
    assert_eq!(created.status(), 201);
    let link = app.link_in(&app.wait_for_mails(1).await[0]);
    app.code_from(&link).await;
    let users_before: Value = app.admin(reqwest::Method::GET, "/v1/users", None).await.json().await.unwrap();
    let events_before: Value =
        app.admin(reqwest::Method::GET, "/v1/events?limit=100", None).await.json().await.unwrap();
    app.stop().await;

    let migrate = |to: &str| {
        Command::new(env!("CARGO_BIN_EXE_latchkey"))
            .args(["migrate-data", "--to", to])
            .env("LATCHKEY_DATABASE_URL", &app.config.database_url)
            .env("LATCHKEY_SECRET_KEY", app.config.secret_key.as_deref().unwrap())
            .env("LATCHKEY_LOG", "warn")
            .output()
            .expect("the binary runs")
    };
    let out = migrate(&target.url);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}{stdout}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("applications: 1 rows") && stdout.contains("users: 2 rows"), "{stdout}");
    let again = migrate(&target.url);
    assert!(!again.status.success(), "a database that holds data is not copied into");
    assert!(String::from_utf8_lossy(&again.stderr).contains("already holds data"));

    // Servers on PostgreSQL, with the same secret, carry on where SQLite stopped.
    let url = target.url.clone();
    let moved = TestApp::spawn_with(Backend::Sqlite, |c| c.database_url = url).await;
    let refreshed = moved
        .as_app(&client)
        .post("/oauth/token")
        .form(&[("grant_type", "refresh_token"), ("refresh_token", refresh.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(refreshed.status(), 200, "the session moved with its refresh token");
    let users_after: Value = moved.admin(reqwest::Method::GET, "/v1/users", None).await.json().await.unwrap();
    assert_eq!(users_after["data"], users_before["data"]);
    let events_after: Value =
        moved.admin(reqwest::Method::GET, "/v1/events?limit=100", None).await.json().await.unwrap();
    let before = events_before["data"].as_array().unwrap();
    assert_eq!(
        events_after["data"].as_array().unwrap()[..before.len()],
        before[..],
        "history kept, in order"
    );
    let orgs: Value =
        moved.admin(reqwest::Method::GET, "/v1/organizations", None).await.json().await.unwrap();
    assert_eq!(orgs["data"][0]["domains"], json!(["moved.example"]));
    // The application's secret and the signing keys came along: a new sign-in works, signed by
    // the key the SQLite server signed with.
    let tokens = moved.sign_in(&client).await;
    assert_eq!(kid(&tokens), kid_before);
}
