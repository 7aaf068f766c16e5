//! The outbox worker: leases queued messages, delivers them, and records the outcome. A
//! message is marked sent as soon as the receiving server accepted it; a failure is retried
//! with exponential backoff and jitter until the message is older than `give_up_after`.
//!
//! Leases are short and renewed while a message is being delivered, so that the messages of a
//! worker that died (`kill -9`) go to another worker, or the restarted one, within seconds.

use crate::{Email, Mailer};
use latchkey_core::id::OutboxId;
use latchkey_core::secret::random_fraction;
use latchkey_core::{Clock, EmailAddress, MasterKey};
use latchkey_store::{OutboxMessage, SentMail, Store, Suppression};
use metrics::{counter, histogram};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration as StdDuration;
use time::Duration;
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio::task::{self, JoinSet};
use tokio::time::Instant;

/// How long a bounced address gets no mail, by default.
pub const DEFAULT_SUPPRESSION: Duration = Duration::days(30);

/// Deliveries in flight at once, by default.
pub const DEFAULT_BATCH: u32 = 256;

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Messages in hand at once (claimed and being delivered).
    pub batch: u32,
    /// How long a claimed message is ours before another worker may take it. The worker
    /// renews the lease of a message still being delivered once a third of it has passed
    /// (looking every sixth), so a dead worker's messages are free again within one lease.
    pub lease: Duration,
    /// How often to look for due messages when nobody wakes the worker.
    pub poll_interval: StdDuration,
    pub first_retry: Duration,
    pub max_retry: Duration,
    pub give_up_after: Duration,
    /// How long an address that bounced (a 5xx to `RCPT TO`) gets no mail; zero: never suppressed.
    pub suppress_for: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            batch: DEFAULT_BATCH,
            lease: Duration::seconds(6),
            poll_interval: StdDuration::from_secs(1),
            first_retry: Duration::seconds(10),
            max_retry: Duration::hours(1),
            give_up_after: Duration::hours(24),
            suppress_for: DEFAULT_SUPPRESSION,
        }
    }
}

impl WorkerConfig {
    /// How often the worker looks for leases to renew.
    fn renewal_check(&self) -> StdDuration {
        self.lease_std() / 6
    }

    /// The age at which a lease is renewed: a third of it, leaving two thirds for the renewal
    /// to land (at least half, counting the time between two looks).
    fn renew_after(&self) -> StdDuration {
        self.lease_std() / 3
    }

    fn lease_std(&self) -> StdDuration {
        StdDuration::try_from(self.lease)
            .unwrap_or(StdDuration::from_secs(1))
            .max(StdDuration::from_millis(60))
    }
}

/// The delay before attempt `attempts + 1`, doubling from `first` up to `max`, with ±20 % jitter
/// so that many messages failing together do not retry together.
pub fn backoff(config: &WorkerConfig, attempts: u32, jitter: f64) -> Duration {
    let doubled = config.first_retry.as_seconds_f64() * 2f64.powi(attempts.min(30) as i32);
    let capped = doubled.min(config.max_retry.as_seconds_f64());
    Duration::seconds_f64(capped * (0.8 + 0.4 * jitter.clamp(0.0, 1.0)))
}

pub struct OutboxWorker {
    store: Arc<dyn Store>,
    mailer: Arc<dyn Mailer>,
    key: MasterKey,
    clock: Arc<dyn Clock>,
    wake: Arc<Notify>,
    config: WorkerConfig,
}

/// A delivered message waiting for its record, and who to tell once it is durable.
type Sent = (SentMail, oneshot::Sender<()>);

/// A message being delivered: which one, and when its lease was last set.
struct Leased {
    id: OutboxId,
    since: Instant,
}

impl OutboxWorker {
    pub fn new(
        store: Arc<dyn Store>,
        mailer: Arc<dyn Mailer>,
        key: MasterKey,
        clock: Arc<dyn Clock>,
        wake: Arc<Notify>,
        config: WorkerConfig,
    ) -> Self {
        Self { store, mailer, key, clock, wake, config }
    }

    /// Runs until `shutdown` turns true; the messages in hand are finished first (their leases
    /// still renewed).
    ///
    /// Up to `batch` deliveries are in flight at once, each a task of its own; whenever half
    /// of them have finished, the worker claims more, so that a slow message does not hold up
    /// the others.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let this = Arc::new(self);
        let (sent, to_record) = mpsc::unbounded_channel();
        let recorder = tokio::spawn(this.clone().record_sent(to_record));
        let mut in_flight = JoinSet::new();
        let mut leased: HashMap<task::Id, Leased> = HashMap::new();
        let mut renewal = tokio::time::interval(this.config.renewal_check());
        renewal.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let stopping = *shutdown.borrow();
            if !stopping && in_flight.len() <= this.config.batch as usize / 2 {
                let room = this.config.batch - in_flight.len() as u32;
                for message in this.claim(room).await {
                    // A lease that ran out under a delivery still going (a clock moved on) is
                    // this worker's own message: the claim renewed it, it is not sent twice.
                    if let Some(held) = leased.values_mut().find(|l| l.id == message.id) {
                        held.since = Instant::now();
                        continue;
                    }
                    let id = message.id.clone();
                    let worker = this.clone();
                    let sent = sent.clone();
                    let handle = in_flight.spawn(async move { worker.deliver(message, sent).await });
                    leased.insert(handle.id(), Leased { id, since: Instant::now() });
                }
            }
            if stopping && in_flight.is_empty() {
                drop(sent);
                let _ = recorder.await;
                return;
            }
            tokio::select! {
                done = in_flight.join_next_with_id(), if !in_flight.is_empty() => {
                    let id = match done {
                        Some(Ok((id, ()))) => id,
                        Some(Err(e)) => e.id(),
                        None => continue,
                    };
                    leased.remove(&id);
                }
                _ = renewal.tick(), if !leased.is_empty() => this.renew(&mut leased).await,
                _ = this.wake.notified(), if !stopping => {}
                _ = tokio::time::sleep(this.config.poll_interval), if !stopping && in_flight.is_empty() => {}
                _ = shutdown.changed(), if !stopping => {}
            }
        }
    }

    /// Renews, in one write, the leases of the messages whose delivery has lasted a third of
    /// a lease; the others were claimed too recently to need it.
    async fn renew(&self, leased: &mut HashMap<task::Id, Leased>) {
        let renew_after = self.config.renew_after();
        let ids: Vec<OutboxId> =
            leased.values().filter(|l| l.since.elapsed() >= renew_after).map(|l| l.id.clone()).collect();
        if ids.is_empty() {
            return;
        }
        let started = Instant::now();
        match self.store.renew_outbox_leases(&ids, self.clock.now() + self.config.lease).await {
            Ok(_) => {
                for held in leased.values_mut().filter(|l| ids.contains(&l.id)) {
                    held.since = started;
                }
            }
            Err(e) => tracing::warn!(error = %e, "outbox: could not renew the leases of messages in flight"),
        }
    }

    async fn claim(&self, room: u32) -> Vec<OutboxMessage> {
        if room == 0 {
            return Vec::new();
        }
        let now = self.clock.now();
        match self.store.claim_outbox(now, now + self.config.lease, room).await {
            Ok(messages) => messages,
            Err(e) => {
                tracing::warn!(error = %e, "outbox: could not claim messages");
                Vec::new()
            }
        }
    }

    /// Records delivered messages in batches: every message delivered by the time the recorder
    /// looks goes in one write (one statement on PostgreSQL, one job of the SQLite writer). A
    /// batch does not wait for the previous one's write: until its record is durable a crash
    /// sends a message again, so the record goes out at once (SQLite's writer still commits
    /// concurrent batches together).
    async fn record_sent(self: Arc<Self>, mut to_record: mpsc::UnboundedReceiver<Sent>) {
        let mut writes = JoinSet::new();
        let mut batch: Vec<Sent> = Vec::new();
        while to_record.recv_many(&mut batch, 512).await > 0 {
            let this = self.clone();
            let batch = std::mem::take(&mut batch);
            writes.spawn(async move {
                let sent: Vec<SentMail> = batch.iter().map(|(mail, _)| mail.clone()).collect();
                match this.store.outbox_sent(&sent, this.clock.now()).await {
                    Ok(()) => tracing::info!(messages = sent.len(), "outbox: delivered"),
                    // The leases run out and the messages are tried again: a duplicate is better than a loss.
                    Err(e) => {
                        tracing::error!(error = %e, messages = sent.len(), "outbox: could not record the deliveries")
                    }
                }
                for (_, done) in batch {
                    let _ = done.send(());
                }
            });
            while writes.try_join_next().is_some() {}
        }
        while writes.join_next().await.is_some() {}
    }

    async fn deliver(&self, message: OutboxMessage, sent: mpsc::UnboundedSender<Sent>) {
        let email = self
            .key
            .unseal(message.id.as_str(), &message.sealed)
            .ok()
            .and_then(|plain| Email::from_json(&plain));
        let result = match &email {
            Some(email) => self.mailer.deliver_via(email).await,
            None => Err(crate::DeliveryError {
                permanent: true,
                bounced: false,
                message: "the queued message is unreadable".into(),
            }),
        };
        let delivered = result.is_ok();
        let result = result.map(|relay| SentMail { id: message.id.clone(), relay });
        let now = self.clock.now();
        let recorded = match result {
            // Recorded before anything else: until it is, a crash means sending it again. The
            // delivery's task (and so its lease's renewal) lasts until the record is written.
            Ok(mail) => {
                let (done, recorded) = oneshot::channel();
                if sent.send((mail, done)).is_ok() {
                    let _ = recorded.await;
                }
                Ok(())
            }
            Err(e) => {
                let next = (!e.permanent && now - message.created_at < self.config.give_up_after)
                    .then(|| now + backoff(&self.config, message.attempts, random_fraction()));
                tracing::warn!(outbox_id = %message.id, error = %e.message, retry = next.is_some(), "outbox: delivery failed");
                counter!("latchkey_mail_deliveries_total", "outcome" => if next.is_some() { "retried" } else { "failed" })
                    .increment(1);
                if let Some(email) = email.as_ref().filter(|_| e.bounced) {
                    self.suppress(&message, email, &e.message).await;
                }
                self.store.outbox_attempt_failed(&message.id, &e.message, next).await
            }
        };
        if delivered {
            counter!("latchkey_mail_deliveries_total", "outcome" => "sent").increment(1);
            let queued_for = (now - message.created_at).as_seconds_f64().max(0.0);
            histogram!("latchkey_mail_delivery_seconds").record(queued_for);
        }
        if let Err(e) = recorded {
            // The lease runs out and the message is tried again: a duplicate is better than a loss.
            tracing::error!(outbox_id = %message.id, error = %e, "outbox: could not record the delivery outcome");
        }
    }

    /// Suppresses the address a message bounced from, for `suppress_for` (not at all when zero).
    async fn suppress(&self, message: &OutboxMessage, email: &Email, reply: &str) {
        if self.config.suppress_for <= Duration::ZERO {
            return;
        }
        let Ok(address) = EmailAddress::parse(&email.to) else { return };
        let now = self.clock.now();
        let suppression = Suppression {
            email: address,
            reason: reply.to_owned(),
            created_at: now,
            until: now + self.config.suppress_for,
        };
        match self.store.suppress(&suppression, message.app_id.as_ref()).await {
            Ok(()) => {
                counter!("latchkey_mail_suppressions_total").increment(1);
                tracing::warn!(outbox_id = %message.id, until = %suppression.until, "outbox: the address bounced and is suppressed");
            }
            Err(e) => {
                tracing::error!(outbox_id = %message.id, error = %e, "outbox: could not suppress a bounced address")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_caps() {
        let c = WorkerConfig::default();
        assert_eq!(backoff(&c, 0, 0.5), Duration::seconds(10));
        assert_eq!(backoff(&c, 3, 0.5), Duration::seconds(80));
        assert_eq!(backoff(&c, 20, 0.5), Duration::hours(1));
        assert_eq!(backoff(&c, 0, 0.0), Duration::seconds(8));
        assert_eq!(backoff(&c, 0, 1.0), Duration::seconds(12));
    }
}
