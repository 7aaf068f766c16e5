//! Request bodies as JSON or form-encoded, whatever the face.

use axum::extract::{FromRequest, Request};
use axum::http::header;
use serde::de::DeserializeOwned;

/// Why a body could not be read; each face says it in its own shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyError {
    /// Not JSON or form as it claims, or not of the expected shape; what the parser said.
    Malformed(String),
    TooLarge,
    UnsupportedMediaType,
}

impl BodyError {
    /// The status every face answers it with.
    pub fn status(&self) -> axum::http::StatusCode {
        use axum::http::StatusCode;
        match self {
            Self::Malformed(_) => StatusCode::BAD_REQUEST,
            Self::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        }
    }

    /// What it says to a person: the parser's words for a malformed body.
    pub fn message(&self) -> String {
        match self {
            Self::Malformed(m) => m.clone(),
            Self::TooLarge => "the request body is too large".into(),
            Self::UnsupportedMediaType => "send a JSON or form-encoded body".into(),
        }
    }
}

/// The largest request body accepted.
pub const BODY_LIMIT: usize = 64 * 1024;

/// A body as JSON or form-encoded. The content type decides when it says JSON or form; a
/// missing or `text/plain` one is sniffed (some SDKs mislabel their bodies). Unknown fields are
/// ignored; an empty body is an empty object.
#[derive(Debug)]
pub struct Input<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Input<T> {
    type Rejection = BodyError;

    async fn from_request(req: Request, _: &S) -> Result<Self, Self::Rejection> {
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or_default().trim().to_ascii_lowercase());
        let bytes =
            axum::body::to_bytes(req.into_body(), BODY_LIMIT).await.map_err(|_| BodyError::TooLarge)?;
        let looks_json = bytes.iter().find(|b| !b.is_ascii_whitespace()).is_some_and(|b| *b == b'{');
        let json = match content_type.as_deref() {
            Some(ct) if ct == "application/json" || ct.ends_with("+json") => {
                looks_json || bytes.is_empty() || !looks_form(&bytes)
            }
            Some("application/x-www-form-urlencoded") => looks_json,
            None | Some("text/plain") => looks_json,
            Some(_) => return Err(BodyError::UnsupportedMediaType),
        };
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return serde_json::from_slice(b"{}")
                .map(Input)
                .map_err(|e| BodyError::Malformed(describe(&e.to_string())));
        }
        if json {
            serde_json::from_slice(&bytes)
                .map(Input)
                .map_err(|e| BodyError::Malformed(format!("invalid JSON body: {}", describe(&e.to_string()))))
        } else {
            serde_html_form::from_bytes(&bytes)
                .map(Input)
                .map_err(|e| BodyError::Malformed(format!("invalid form body: {}", describe(&e.to_string()))))
        }
    }
}

fn looks_form(bytes: &[u8]) -> bool {
    bytes.contains(&b'=')
}

/// Parser messages name fields and types, never values; bound their length all the same.
fn describe(message: &str) -> String {
    message.chars().take(200).collect()
}
