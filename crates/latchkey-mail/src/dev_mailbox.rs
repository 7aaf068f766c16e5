use crate::{DeliveryError, Email, Mailer};
use async_trait::async_trait;
use std::collections::VecDeque;
use std::sync::Mutex;

/// The development mailbox: keeps the latest messages in memory for the `/dev/mailbox` page
/// and prints each one to the terminal, so the first sign-in works without SMTP.
#[derive(Debug)]
pub struct DevMailbox {
    messages: Mutex<VecDeque<(Email, String)>>,
    print: bool,
}

impl DevMailbox {
    const KEEP: usize = 50;

    pub fn new(print: bool) -> Self {
        Self { messages: Mutex::new(VecDeque::new()), print }
    }

    /// Newest first.
    pub fn messages(&self) -> Vec<Email> {
        self.messages.lock().expect("mailbox lock").iter().rev().map(|(m, _)| m.clone()).collect()
    }

    /// The `n`th message (newest first) exactly as it would have gone over SMTP: headers
    /// (`Date`, `Message-ID`, …) and both MIME parts.
    pub fn source(&self, n: usize) -> Option<String> {
        self.messages.lock().expect("mailbox lock").iter().rev().nth(n).map(|(_, raw)| raw.clone())
    }
}

#[async_trait]
impl Mailer for DevMailbox {
    async fn deliver(&self, email: &Email) -> Result<(), DeliveryError> {
        let raw = crate::smtp::build_message(email)?.formatted();
        if self.print {
            println!(
                "\n--- development mailbox ---\nTo: {}\nSubject: {}\n\n{}\n---------------------------",
                email.to, email.subject, email.text
            );
        }
        let mut messages = self.messages.lock().expect("mailbox lock");
        if messages.len() == Self::KEEP {
            messages.pop_front();
        }
        messages.push_back((email.clone(), String::from_utf8_lossy(&raw).into_owned()));
        Ok(())
    }
}
