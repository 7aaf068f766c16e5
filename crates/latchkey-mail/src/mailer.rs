use crate::Email;
use async_trait::async_trait;

#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct DeliveryError {
    /// The server refused the message for good (5xx); retrying will not help.
    pub permanent: bool,
    /// The server refused the recipient's address for good (a 5xx to `RCPT TO`): a bounce,
    /// after which the address is suppressed.
    pub bounced: bool,
    /// For the outbox's `last_error`: the server's reply or the connection failure, never the message.
    pub message: String,
}

/// Where messages go once the outbox worker takes them.
#[async_trait]
pub trait Mailer: Send + Sync + 'static {
    /// Returns once the receiving server accepted the message.
    async fn deliver(&self, email: &Email) -> Result<(), DeliveryError>;

    /// The same, and which relay took the message (`host:port`), when there is such a thing.
    async fn deliver_via(&self, email: &Email) -> Result<Option<String>, DeliveryError> {
        self.deliver(email).await.map(|()| None)
    }
}
