//! Scanner telemetry: every request for a link's landing page is recorded and read back
//! classified (see `latchkey_core::link_view`). The page never waits for the record: it hands
//! the view to a queue of its own, and one task writes whatever has queued in one store call,
//! so that a flood of views costs a write per batch rather than per view.

use crate::{Service, ServiceError, metrics};
use latchkey_core::ChallengeStatus;
use latchkey_core::link_view::{self, ClassifiedView, KEPT_VIEWS_PER_LINK, LinkView};
use latchkey_store::{ChallengeRecord, Store};
use std::sync::Arc;
use tokio::sync::mpsc;

/// Views waiting to be written; beyond this, new ones are counted as dropped and not kept.
const QUEUE: usize = 10_000;
/// The most views written in one store call.
const BATCH: usize = 512;
/// How long a view waits for others to be written with it.
const LINGER: std::time::Duration = std::time::Duration::from_millis(100);

/// A link's views as the application reads them.
#[derive(Debug)]
pub struct LinkViewReport {
    /// Every request for the landing page, kept or only counted (presses included).
    pub total: u64,
    /// The first ones in full, with their signs; presses are not listed.
    pub views: Vec<ClassifiedView>,
}

/// The queue in front of the store; its writer runs while the queue has a sender.
pub(crate) struct ViewQueue(Option<mpsc::Sender<(LinkView, tracing::Span)>>);

impl ViewQueue {
    /// Starts the writer on the current runtime; without one, views are not recorded.
    pub(crate) fn start(store: Arc<dyn Store>) -> Self {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return Self(None) };
        let (send, receive) = mpsc::channel(QUEUE);
        runtime.spawn(write_views(store, receive));
        Self(Some(send))
    }

    fn push(&self, view: LinkView) {
        let Some(queue) = &self.0 else { return };
        if queue.try_send((view, tracing::Span::current())).is_err() {
            metrics::link_view_dropped();
        }
    }
}

async fn write_views(store: Arc<dyn Store>, mut queue: mpsc::Receiver<(LinkView, tracing::Span)>) {
    let mut batch = Vec::with_capacity(BATCH);
    while queue.recv_many(&mut batch, BATCH).await > 0 {
        // The first view waits a little for others: one write then carries them all, and a
        // page of the tables that several of them touch is written once, not once each.
        let deadline = tokio::time::Instant::now() + LINGER;
        while batch.len() < BATCH {
            let room = BATCH - batch.len();
            match tokio::time::timeout_at(deadline, queue.recv_many(&mut batch, room)).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        let (views, spans): (Vec<LinkView>, Vec<tracing::Span>) = batch.drain(..).unzip();
        match store.record_link_views(&views, KEPT_VIEWS_PER_LINK).await {
            Ok(recorded) => {
                for (view, recorded) in views.iter().zip(recorded) {
                    metrics::link_viewed(view.method, !recorded.signs.is_empty());
                }
            }
            Err(e) => {
                // In the first request's span, so that the line names a request.
                let _in_request = spans.first().map(|s| s.enter());
                tracing::warn!(error = %e, views = views.len(), "link views could not be recorded");
            }
        }
    }
}

impl Service {
    /// Queues a view for recording; never waits and never fails the page.
    pub(crate) fn record_link_view(&self, view: LinkView) {
        self.views.push(view);
    }

    /// The views of a magic link the caller has read (and so may see).
    pub async fn magic_link_views(&self, record: &ChallengeRecord) -> Result<LinkViewReport, ServiceError> {
        let still_open = record.challenge.status_at(self.clock.now()) == ChallengeStatus::Pending;
        let views = self.store.link_views(&record.challenge.id).await?;
        Ok(LinkViewReport { total: views.total, views: link_view::classify(&views, still_open) })
    }
}
