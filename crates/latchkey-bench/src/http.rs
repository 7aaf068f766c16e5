//! A small HTTP/1.1 client over hyper: keep-alive connections, a pool sized to the
//! concurrency, no redirect following (the landing page's 303 is a result to check).

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue, LOCATION};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::time::Duration;

/// A request still unanswered after this long counts as an error (and frees its worker).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// An answer: its status, its `Location` header if any, and its whole body.
pub struct Answer {
    pub status: StatusCode,
    pub location: Option<String>,
    pub body: Bytes,
}

impl Answer {
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// A short description for error samples: the status and the start of the body.
    pub fn describe(&self) -> String {
        let text = String::from_utf8_lossy(&self.body);
        let text: String = text.chars().take(160).collect();
        format!("{} {}", self.status.as_u16(), text.replace('\n', " "))
    }
}

/// A request body and its media type.
pub enum Body {
    Empty,
    Json(String),
    Form(String),
}

#[derive(Clone)]
pub struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
    /// `http://host:port`, no trailing slash.
    base: String,
}

impl Http {
    pub fn new(base: &str, pool: usize) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(pool.max(1))
            .pool_idle_timeout(Duration::from_secs(60))
            .build(connector);
        Self { client, base: base.trim_end_matches('/').to_owned() }
    }

    /// Sends one request to `path` (which starts with `/`) and reads the whole answer.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        authorization: Option<&HeaderValue>,
        body: Body,
    ) -> anyhow::Result<Answer> {
        let mut builder = Request::builder().method(method).uri(format!("{}{}", self.base, path));
        if let Some(value) = authorization {
            builder = builder.header(AUTHORIZATION, value.clone());
        }
        let body = match body {
            Body::Empty => Full::new(Bytes::new()),
            Body::Json(text) => {
                builder = builder.header(CONTENT_TYPE, "application/json");
                Full::new(Bytes::from(text))
            }
            Body::Form(text) => {
                builder = builder.header(CONTENT_TYPE, "application/x-www-form-urlencoded");
                Full::new(Bytes::from(text))
            }
        };
        let request = builder.body(body).context("building a request")?;
        let exchange = async {
            let response = self.client.request(request).await.context("sending a request")?;
            let status = response.status();
            let location =
                response.headers().get(LOCATION).and_then(|v| v.to_str().ok()).map(|v| v.to_owned());
            let body = response.into_body().collect().await.context("reading an answer")?.to_bytes();
            Ok(Answer { status, location, body })
        };
        tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| anyhow::anyhow!("no answer within {} s", REQUEST_TIMEOUT.as_secs()))?
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Answer> {
        self.send(Method::GET, path, None, Body::Empty).await
    }
}

/// `Authorization: Basic base64(id:secret)`.
pub fn basic(id: &str, secret: &str) -> HeaderValue {
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
    HeaderValue::from_str(&format!("Basic {encoded}")).expect("base64 is a valid header value")
}

pub fn bearer(token: &str) -> anyhow::Result<HeaderValue> {
    HeaderValue::from_str(&format!("Bearer {token}")).context("the admin token is not a valid header value")
}

/// Percent-encodes a form value (everything but unreserved characters).
pub fn form_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 8);
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The path and query of an absolute URL (`http://host/l/abc` → `/l/abc`), or the input if it
/// is already a path. Links carry the server's public URL; the bench talks to its own base.
pub fn path_of(url: &str) -> &str {
    match url.find("://") {
        Some(scheme_end) => {
            let rest = &url[scheme_end + 3..];
            rest.find('/').map(|i| &rest[i..]).unwrap_or("/")
        }
        None => url,
    }
}

/// The value of `name` in the query string of `url`, undecoded (codes are URL-safe).
pub fn query_param<'a>(url: &'a str, name: &str) -> Option<&'a str> {
    let query = url.split_once('?')?.1;
    let query = query.split('#').next().unwrap_or(query);
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == name).then_some(v)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_helpers() {
        assert_eq!(path_of("http://127.0.0.1:8080/l/abc"), "/l/abc");
        assert_eq!(path_of("/l/abc"), "/l/abc");
        assert_eq!(path_of("https://x.example"), "/");
        assert_eq!(query_param("https://b.example/cb?code=abc-_1&state=s", "code"), Some("abc-_1"));
        assert_eq!(query_param("https://b.example/cb?state=s", "code"), None);
        assert_eq!(form_encode("a+b@c.d"), "a%2Bb%40c.d");
    }
}
