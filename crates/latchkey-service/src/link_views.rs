//! Scanner telemetry: every request for a link's landing page is recorded, in the background so
//! that the page never waits for it, and read back classified (see `latchkey_core::link_view`).

use crate::{Service, ServiceError, metrics};
use latchkey_core::ChallengeStatus;
use latchkey_core::event::Event;
use latchkey_core::id::AppId;
use latchkey_core::link_view::{self, ClassifiedView, KEPT_VIEWS_PER_LINK, LinkView};
use latchkey_store::ChallengeRecord;

/// A link's views as the application reads them.
#[derive(Debug)]
pub struct LinkViewReport {
    /// Every request for the landing page, kept or only counted (presses included).
    pub total: u64,
    /// The first ones in full, with their signs; presses are not listed.
    pub views: Vec<ClassifiedView>,
}

impl Service {
    /// Counts a view, keeps it while the link has few, and writes its event; never fails the
    /// page (a failure is logged).
    pub(crate) fn record_link_view(&self, app_id: &AppId, view: LinkView) {
        let (store, app_id) = (self.store.clone(), app_id.clone());
        // In the request's span: its log lines carry the request id.
        let span = tracing::Span::current();
        tokio::spawn(tracing::Instrument::instrument(
            async move {
                let recorded = match store.record_link_view(&view, KEPT_VIEWS_PER_LINK).await {
                    Ok(recorded) => recorded,
                    Err(e) => {
                        tracing::warn!(error = %e, "a link view could not be recorded");
                        return;
                    }
                };
                let signs = link_view::signs_on_arrival(&view, recorded.delivered_at);
                metrics::link_viewed(view.method, !signs.is_empty());
                if recorded.kept
                    && let Err(e) = store.insert_event(&Event::link_viewed(&app_id, &view, &signs)).await
                {
                    tracing::warn!(error = %e, "a link view's event could not be written");
                }
            },
            span,
        ));
    }

    /// The views of a magic link the caller has read (and so may see).
    pub async fn magic_link_views(&self, record: &ChallengeRecord) -> Result<LinkViewReport, ServiceError> {
        let still_open = record.challenge.status_at(self.clock.now()) == ChallengeStatus::Pending;
        let views = self.store.link_views(&record.challenge.id).await?;
        Ok(LinkViewReport { total: views.total, views: link_view::classify(&views, still_open) })
    }
}
