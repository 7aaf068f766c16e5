//! Addresses that get no mail for a while because a delivery to them bounced: what the admin
//! reads and lifts. The outbox worker suppresses; creating a challenge honours it in the store.

use crate::{Page, PageSize, Refusal, Resource, Service, ServiceError};
use latchkey_core::EmailAddress;
use latchkey_store::Suppression;

impl Service {
    /// The suppressions in force, by address.
    pub async fn list_suppressions(
        &self,
        after: Option<&EmailAddress>,
        limit: PageSize,
    ) -> Result<Page<Suppression>, ServiceError> {
        let items = self.store.list_suppressions(after, limit.get(), self.clock.now()).await?;
        Ok(Page::read(items, limit, |s| s.email.as_str().to_owned()))
    }

    /// The address's suppression, when one is in force.
    pub async fn suppression(&self, email: &EmailAddress) -> Result<Suppression, ServiceError> {
        let found = self.store.suppression(email, self.clock.now()).await?;
        Ok(found.ok_or(Refusal::NotFound(Resource::Suppression))?)
    }

    /// Lifts the address's suppression: its next e-mail is queued again.
    pub async fn delete_suppression(&self, email: &EmailAddress) -> Result<(), ServiceError> {
        if self.store.delete_suppression(email, self.clock.now()).await? {
            Ok(())
        } else {
            Err(Refusal::NotFound(Resource::Suppression).into())
        }
    }
}
