//! The outbox worker: leases queued messages, delivers them, and records the outcome. A
//! message is marked sent only after the receiving server accepted it; a failure is retried
//! with exponential backoff and jitter until the message is older than `give_up_after`.

use crate::{Email, Mailer};
use latchkey_core::secret::random_fraction;
use latchkey_core::{Clock, MasterKey};
use latchkey_store::{OutboxMessage, Store};
use metrics::{counter, histogram};
use std::sync::Arc;
use std::time::Duration as StdDuration;
use time::Duration;
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

/// Deliveries in flight at once, by default.
pub const DEFAULT_BATCH: u32 = 64;

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Messages in hand at once (claimed and being delivered).
    pub batch: u32,
    /// How long a claimed message is ours before another worker may take it.
    pub lease: Duration,
    /// How often to look for due messages when nobody wakes the worker.
    pub poll_interval: StdDuration,
    pub first_retry: Duration,
    pub max_retry: Duration,
    pub give_up_after: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            batch: DEFAULT_BATCH,
            lease: Duration::minutes(2),
            poll_interval: StdDuration::from_secs(1),
            first_retry: Duration::seconds(10),
            max_retry: Duration::hours(1),
            give_up_after: Duration::hours(24),
        }
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

    /// Runs until `shutdown` turns true; the messages in hand are finished first.
    ///
    /// Up to `batch` deliveries are in flight at once, each a task of its own; whenever half
    /// of them have finished, the worker claims more, so that a slow message does not hold up
    /// the others.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let this = Arc::new(self);
        let mut in_flight = JoinSet::new();
        loop {
            if !*shutdown.borrow() && in_flight.len() <= this.config.batch as usize / 2 {
                let room = this.config.batch - in_flight.len() as u32;
                for message in this.claim(room).await {
                    let worker = this.clone();
                    in_flight.spawn(async move { worker.deliver(message).await });
                }
            }
            if *shutdown.borrow() {
                while in_flight.join_next().await.is_some() {}
                return;
            }
            if in_flight.is_empty() {
                tokio::select! {
                    _ = this.wake.notified() => {}
                    _ = tokio::time::sleep(this.config.poll_interval) => {}
                    _ = shutdown.changed() => {}
                }
            } else {
                tokio::select! {
                    _ = in_flight.join_next() => {}
                    _ = this.wake.notified() => {}
                    _ = shutdown.changed() => {}
                }
            }
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

    async fn deliver(&self, message: OutboxMessage) {
        let email = self
            .key
            .unseal(message.id.as_str(), &message.sealed)
            .ok()
            .and_then(|plain| Email::from_json(&plain));
        let result = match &email {
            Some(email) => self.mailer.deliver(email).await,
            None => Err(crate::DeliveryError {
                permanent: true,
                message: "the queued message is unreadable".into(),
            }),
        };
        let delivered = result.is_ok();
        let now = self.clock.now();
        let recorded = match result {
            Ok(()) => {
                tracing::info!(outbox_id = %message.id, "outbox: delivered");
                self.store.outbox_sent(&message.id, now).await
            }
            Err(e) => {
                let next = (!e.permanent && now - message.created_at < self.config.give_up_after)
                    .then(|| now + backoff(&self.config, message.attempts, random_fraction()));
                tracing::warn!(outbox_id = %message.id, error = %e.message, retry = next.is_some(), "outbox: delivery failed");
                counter!("latchkey_mail_deliveries_total", "outcome" => if next.is_some() { "retried" } else { "failed" })
                    .increment(1);
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
