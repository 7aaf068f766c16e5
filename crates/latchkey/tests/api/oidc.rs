//! A relying party that knows only the issuer URL verifies the tokens with a standard JWT
//! library, through discovery and the key set.

use crate::backend_tests;
use crate::helpers::{TestApp, header};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode};
use serde_json::{Value, json};

backend_tests!(
    tokens_verify_from_the_issuer_url_alone,
    keys_survive_a_restart,
    eddsa_applications_get_eddsa_tokens
);

/// Discovery, then the key set it names, then verification with issuer and audience checks.
async fn verify(app: &TestApp, jwt: &str, audience: &str) -> Value {
    let discovery: Value = app
        .http
        .get(app.url("/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let issuer = discovery["issuer"].as_str().unwrap();
    assert_eq!(issuer, app.base);
    let jwks: JwkSet =
        app.http.get(discovery["jwks_uri"].as_str().unwrap()).send().await.unwrap().json().await.unwrap();
    let h = jsonwebtoken::decode_header(jwt).unwrap();
    let jwk = jwks.find(h.kid.as_deref().unwrap()).expect("the signing key is published");
    let mut validation = Validation::new(h.alg);
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[audience]);
    decode::<Value>(jwt, &DecodingKey::from_jwk(jwk).unwrap(), &validation)
        .expect("the token verifies")
        .claims
}

async fn tokens_verify_from_the_issuer_url_alone(app: TestApp) {
    let discovery: Value = app
        .http
        .get(app.url("/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for key in [
        "issuer",
        "authorization_endpoint",
        "token_endpoint",
        "jwks_uri",
        "response_types_supported",
        "subject_types_supported",
        "id_token_signing_alg_values_supported",
    ] {
        assert!(!discovery[key].is_null(), "discovery lacks {key}");
    }
    assert_eq!(discovery["token_endpoint"], app.url("/oauth/token"));
    assert!(discovery["code_challenge_methods_supported"].as_array().unwrap().contains(&json!("S256")));

    let client = app.client().await;
    let tokens = app.sign_in(&client).await;
    let id_token = tokens["id_token"].as_str().unwrap();
    assert_eq!(header(id_token)["alg"], "ES256");
    let claims = verify(&app, id_token, &client.id).await;
    assert!(claims["exp"].as_i64().unwrap() > claims["iat"].as_i64().unwrap());
    assert!(claims["auth_time"].is_i64());

    let access = tokens["access_token"].as_str().unwrap();
    assert_eq!(header(access)["typ"], "at+jwt");
    let claims = verify(&app, access, &client.id).await;
    assert_eq!(claims["client_id"], client.id.as_str());
    assert_eq!(claims["scope"], "openid email");
    assert!(claims["jti"].is_string());

    // A token from elsewhere does not verify.
    let tampered = format!("{}x", &id_token[..id_token.len() - 1]);
    let h = jsonwebtoken::decode_header(id_token).unwrap();
    let jwks: JwkSet = app.http.get(app.url("/oauth/jwks")).send().await.unwrap().json().await.unwrap();
    let key = DecodingKey::from_jwk(jwks.find(h.kid.as_deref().unwrap()).unwrap()).unwrap();
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_audience(&[client.id.as_str()]);
    assert!(decode::<Value>(&tampered, &key, &validation).is_err());
}

async fn keys_survive_a_restart(mut app: TestApp) {
    let client = app.client().await;
    let tokens = app.sign_in(&client).await;
    let before: Value = app.http.get(app.url("/oauth/jwks")).send().await.unwrap().json().await.unwrap();
    app.start(false).await;
    let after: Value = app.http.get(app.url("/oauth/jwks")).send().await.unwrap().json().await.unwrap();
    assert_eq!(before, after, "keys are persisted, not regenerated");
    // Tokens signed before the restart still verify (against the new listener's issuer URL
    // their `iss` differs, so check the signature with the old issuer).
    let id_token = tokens["id_token"].as_str().unwrap();
    let h = jsonwebtoken::decode_header(id_token).unwrap();
    let jwks: JwkSet = serde_json::from_value(after).unwrap();
    let key = DecodingKey::from_jwk(jwks.find(h.kid.as_deref().unwrap()).unwrap()).unwrap();
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_audience(&[client.id.as_str()]);
    assert!(decode::<Value>(id_token, &key, &validation).is_ok());
    // And the application and its secret still work.
    app.sign_in(&client).await;
}

async fn eddsa_applications_get_eddsa_tokens(app: TestApp) {
    let client = app
        .create_client(
            json!({"name": "Ed", "redirect_uris": [crate::helpers::CALLBACK], "signing_alg": "EdDSA"}),
        )
        .await;
    let tokens = app.sign_in(&client).await;
    let id_token = tokens["id_token"].as_str().unwrap();
    assert_eq!(header(id_token)["alg"], "EdDSA");
    verify(&app, id_token, &client.id).await;
}
