//! `GET /openapi.json`: the native API's document is served, names every native endpoint, passes
//! a standard validator, and a schema-driven fuzzer run against the server finds no 5xx and no
//! answer that contradicts it.

use crate::helpers::{ADMIN_TOKEN, Backend, TestApp};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Every native endpoint of product.md §3, as the document must name it.
const NATIVE: &[(&str, &str)] = &[
    ("post", "/v1/applications"),
    ("get", "/v1/applications"),
    ("get", "/v1/applications/{id}"),
    ("patch", "/v1/applications/{id}"),
    ("delete", "/v1/applications/{id}"),
    ("post", "/v1/applications/{id}/secrets"),
    ("delete", "/v1/applications/{id}/secrets/{secret_id}"),
    ("get", "/v1/applications/{id}/templates"),
    ("get", "/v1/applications/{id}/templates/{purpose}/{locale}"),
    ("put", "/v1/applications/{id}/templates/{purpose}/{locale}"),
    ("delete", "/v1/applications/{id}/templates/{purpose}/{locale}"),
    ("get", "/v1/applications/{id}/pages"),
    ("get", "/v1/applications/{id}/pages/{page}"),
    ("put", "/v1/applications/{id}/pages/{page}"),
    ("delete", "/v1/applications/{id}/pages/{page}"),
    ("post", "/v1/magic-links"),
    ("get", "/v1/magic-links/{id}"),
    ("delete", "/v1/magic-links/{id}"),
    ("post", "/v1/registrations"),
    ("post", "/v1/registrations/validate"),
    ("post", "/v1/verification-links"),
    ("post", "/v1/verification-links/redeem"),
    ("post", "/v1/users"),
    ("get", "/v1/users"),
    ("get", "/v1/users/{id}"),
    ("patch", "/v1/users/{id}"),
    ("delete", "/v1/users/{id}"),
    ("get", "/v1/users/{id}/sessions"),
    ("delete", "/v1/users/{id}/sessions"),
    ("post", "/v1/organizations"),
    ("get", "/v1/organizations"),
    ("get", "/v1/organizations/{id}"),
    ("patch", "/v1/organizations/{id}"),
    ("delete", "/v1/organizations/{id}"),
    ("get", "/v1/events"),
    ("get", "/v1/suppressions"),
    ("get", "/v1/suppressions/{email}"),
    ("delete", "/v1/suppressions/{email}"),
    ("post", "/v1/keys/rotate"),
];

async fn document(app: &TestApp) -> Value {
    let res = app.http.get(app.url("/openapi.json")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let content_type = res.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("application/json"), "{content_type}");
    res.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_names_every_native_endpoint_with_its_schemas_and_security() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let doc = document(&app).await;
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    let operations: usize = paths.values().map(|p| p.as_object().unwrap().len()).sum();
    assert_eq!(operations, NATIVE.len(), "the document has endpoints that the list above lacks");
    for (method, path) in NATIVE {
        let op = &doc["paths"][path][method];
        assert!(op.is_object(), "{method} {path} is not in the document");
        assert!(!op["security"].as_array().unwrap().is_empty(), "{method} {path}: no security");
        let success = op["responses"].as_object().unwrap().keys().find(|s| s.starts_with('2')).cloned();
        assert!(success.is_some(), "{method} {path}: no success response");
        for status in ["400", "401", "422", "429", "503"] {
            assert!(op["responses"][status].is_object(), "{method} {path}: no {status}");
        }
    }
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["admin_token"]["scheme"], "bearer");
    assert_eq!(schemes["client_basic"]["scheme"], "basic");
    assert_eq!(schemes["client_bearer"]["scheme"], "bearer");
    let error = &doc["components"]["schemas"]["ErrorBody"];
    assert_eq!(error["required"], json!(["error", "message"]));
    // What a create answers opens the resource it made.
    let created = &doc["paths"]["/v1/users"]["post"]["responses"]["201"];
    assert_eq!(created["links"]["read_user"]["parameters"]["id"], "$response.body#/id");
}

/// The suite's Python environment, made by `tests/sdk/*/install.sh`.
fn python_tool(name: &str) -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let tool = root.join("target/sdk/venv/bin").join(name);
    assert!(
        tool.exists(),
        "{} is missing: run crates/latchkey/tests/sdk/openapi/install.sh (CI does)",
        tool.display()
    );
    tool
}

/// Runs a command to its end, within `limit`, and answers whether it succeeded and what it said.
fn run(command: &mut Command, limit: Duration) -> (bool, String) {
    let out = tempfile::NamedTempFile::new().unwrap();
    let file = out.reopen().unwrap();
    let mut child =
        command.stdout(file.try_clone().unwrap()).stderr(file).stdin(Stdio::null()).spawn().unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let text = std::fs::read_to_string(out.path()).unwrap_or_default();
    match status {
        Some(s) => (s.success(), text),
        None => (false, format!("timed out after {limit:?}\n{text}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the OpenAPI tools (crates/latchkey/tests/sdk/openapi/install.sh)"]
async fn the_document_validates_and_the_fuzzer_finds_no_server_error_or_contradiction() {
    let validator = python_tool("openapi-spec-validator");
    let fuzzer = python_tool("schemathesis");
    let app = TestApp::spawn(Backend::Sqlite).await;
    let client = app
        .create_client(json!({
            "name": "Fuzzed",
            "redirect_uris": ["https://app.example/callback"],
            "registration_redirect_uris": ["https://app.example/registered"],
        }))
        .await;
    let doc = document(&app).await;
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), serde_json::to_vec(&doc).unwrap()).unwrap();

    let (ok, said) = run(Command::new(&validator).arg(file.path()), Duration::from_secs(60));
    assert!(ok, "the document does not validate:\n{said}");

    // The admin's endpoints with the admin token, the applications' with a client secret; a
    // bounded number of cases per operation, every phase that needs no hand-written example.
    let admin_tags = ["applications", "templates", "users", "events", "keys", "organizations"];
    let app_tags = ["magic links", "registrations", "verification links"];
    let runs = [
        (format!("Authorization: Bearer {ADMIN_TOKEN}"), &admin_tags[..]),
        (format!("Authorization: Bearer {}", client.secret), &app_tags[..]),
    ];
    let base = app.base.clone();
    let schema = file.path().to_owned();
    // The fuzzer keeps a cache in its working folder: not in the source tree.
    let scratch = tempfile::tempdir().unwrap();
    for (auth, tags) in runs {
        let mut cmd = Command::new(&fuzzer);
        cmd.current_dir(scratch.path())
            .arg("run")
            .arg(&schema)
            .args(["--url", &base])
            .args(["-H", &auth])
            .args([
                "--checks",
                "not_a_server_error,status_code_conformance,content_type_conformance,\
                 response_headers_conformance,response_schema_conformance",
            ])
            .args(["--phases", "coverage,fuzzing,stateful"])
            .args(["--max-examples", "25", "--workers", "1", "--request-timeout", "10"])
            .args(["--seed", "20261203"])
            .env("NO_COLOR", "1");
        for tag in tags {
            cmd.args(["--include-tag", tag]);
        }
        let (ok, said) =
            tokio::task::spawn_blocking(move || run(&mut cmd, Duration::from_secs(300))).await.unwrap();
        let summary: String =
            said.lines().rev().take(40).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
        assert!(ok, "the fuzzer found problems ({tags:?}):\n{said}");
        assert!(said.contains("passed"), "the fuzzer ran nothing ({tags:?}):\n{summary}");
        println!("{summary}");
    }
}
