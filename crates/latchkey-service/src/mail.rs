//! The look, the language and the envelope of the messages a request queues.

use crate::Service;
use latchkey_core::id::OutboxId;
use latchkey_core::{Application, Challenge, EmailAddress};
use latchkey_mail::Email;
use latchkey_mail::Locale;
use latchkey_mail::compose::{self, Envelope};
use latchkey_mail::templates::{self, Branding, Purpose};
use latchkey_store::NewOutboxMessage;

impl Service {
    /// The language of a message: the request's locale, else the user's, else the
    /// application's default, whichever comes first in which the message can be written
    /// (built in, or one of the application's templates); English when none can.
    pub(crate) fn locale_for(
        &self,
        app: &Application,
        purpose: Purpose,
        request: Option<&Locale>,
        user: Option<&Locale>,
    ) -> Locale {
        let default = app.settings.default_locale.as_deref().and_then(|l| Locale::parse(l).ok());
        let candidates = [request, user, default.as_ref()];
        templates::choose_locale(purpose, candidates.into_iter().flatten(), &app.settings.templates)
    }

    /// How the application's messages look.
    pub(crate) fn mail_branding<'a>(&self, app: &'a Application) -> Branding<'a> {
        let b = &app.settings.branding;
        Branding {
            product: app.product_name(),
            logo_url: b.logo_url.as_deref(),
            color: b.primary_color.as_deref(),
        }
    }

    /// A new outbox entry's id and its envelope: the sender from the application's branding
    /// (the server's default for what it leaves out), and a Message-ID made of the entry's id
    /// on the server's own host.
    pub(crate) fn mail_envelope(&self, app: &Application, to: &EmailAddress) -> (OutboxId, Envelope) {
        self.mail_envelope_from(app, to, None)
    }

    /// As [`Service::mail_envelope`], with the sender's name of the request when it gives one.
    pub(crate) fn mail_envelope_from(
        &self,
        app: &Application,
        to: &EmailAddress,
        sender_name: Option<&str>,
    ) -> (OutboxId, Envelope) {
        let id = OutboxId::generate(self.clock.now());
        let b = &app.settings.branding;
        let host = self.public_url.host_str().unwrap_or("localhost");
        let name = sender_name.or(b.sender_name.as_deref());
        let envelope = Envelope {
            from: compose::sender(name, b.sender_email.as_deref(), &self.mail_from),
            to: to.as_str().to_owned(),
            message_id: format!("{id}@{host}"),
        };
        (id, envelope)
    }

    /// A composed message as an outbox entry of the challenge: sealed, because it carries a
    /// live link or code.
    pub(crate) fn outbox_entry(
        &self,
        app: &Application,
        challenge: &Challenge,
        id: OutboxId,
        email: &Email,
    ) -> NewOutboxMessage {
        NewOutboxMessage {
            sealed: self.key.seal(id.as_str(), &email.to_json()),
            id,
            app_id: Some(app.id.clone()),
            challenge_id: Some(challenge.id.clone()),
            created_at: challenge.created_at,
            held: false,
        }
    }
}
