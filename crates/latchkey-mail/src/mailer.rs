use crate::Email;
use async_trait::async_trait;

#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct DeliveryError {
    /// The server refused the message for good (5xx); retrying will not help.
    pub permanent: bool,
    /// For the outbox's `last_error`: the server's reply or the connection failure, never the message.
    pub message: String,
}

/// Where messages go once the outbox worker takes them.
#[async_trait]
pub trait Mailer: Send + Sync + 'static {
    /// Returns once the receiving server accepted the message.
    async fn deliver(&self, email: &Email) -> Result<(), DeliveryError>;
}
