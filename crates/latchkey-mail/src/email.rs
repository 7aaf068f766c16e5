use serde::{Deserialize, Serialize};

/// A composed message, as sealed into the outbox and handed to a [`crate::Mailer`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Email {
    /// `Name <address>` or a bare address.
    pub from: String,
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
    /// Without angle brackets; one per outbox entry, so a resend is recognisable.
    pub message_id: String,
}

impl Email {
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("email serialises")
    }

    pub fn from_json(bytes: &[u8]) -> Option<Self> {
        serde_json::from_slice(bytes).ok()
    }
}
