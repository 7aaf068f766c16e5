//! Users (admin API): create, read, list by cursor, change, delete; their sessions; the events.

use crate::registrations::taken;
use crate::{Refusal, Resource, Service, ServiceError};
use latchkey_core::event::{Event, EventKind};
use latchkey_core::id::UserId;
use latchkey_core::refresh::RefreshToken;
use latchkey_core::user::check_profile;
use latchkey_core::{EmailAddress, User};
use latchkey_mail::Locale;
use std::collections::BTreeMap;

pub const DEFAULT_PAGE: u32 = 20;
pub const MAX_PAGE: u32 = 100;

#[derive(Debug, Clone)]
pub struct NewUser {
    pub email: EmailAddress,
    pub name: Option<String>,
    pub metadata: BTreeMap<String, String>,
    /// The language of the user's e-mails.
    pub locale: Option<Locale>,
}

/// A change: only what is `Some` changes; `name: Some("")` and `locale: Some(None)` clear.
#[derive(Debug, Clone, Default)]
pub struct UserChange {
    pub email: Option<EmailAddress>,
    pub name: Option<String>,
    pub metadata: Option<BTreeMap<String, String>>,
    pub locale: Option<Option<Locale>>,
}

/// A page of a list and the cursor of the next one, if any.
#[derive(Debug)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
}

impl<T> Page<T> {
    /// The items read with `limit`: when they fill it, the next page starts after the last
    /// one, whose cursor is `cursor`.
    pub(crate) fn read(items: Vec<T>, limit: PageSize, cursor: impl Fn(&T) -> String) -> Self {
        let full = items.len() == limit.0 as usize;
        let next = full.then(|| items.last().map(cursor)).flatten();
        Self { items, next }
    }
}

/// How many items a page holds: 1 to [`MAX_PAGE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageSize(u32);

impl PageSize {
    pub fn get(self) -> u32 {
        self.0
    }

    pub fn parse(limit: Option<u32>) -> Result<Self, Refusal> {
        match limit.unwrap_or(DEFAULT_PAGE) {
            n @ 1..=MAX_PAGE => Ok(Self(n)),
            _ => Err(Refusal::invalid("limit", format!("limit must be between 1 and {MAX_PAGE}"))),
        }
    }
}

impl Default for PageSize {
    fn default() -> Self {
        Self(DEFAULT_PAGE)
    }
}

fn profile(user: &User) -> Result<(), Refusal> {
    check_profile(user.name.as_deref(), &user.metadata).map_err(|m| Refusal::invalid("metadata", m))
}

impl Service {
    pub async fn create_user(&self, cmd: NewUser) -> Result<User, ServiceError> {
        let mut user = User::new(cmd.email, self.clock.now());
        user.name = cmd.name;
        user.metadata = cmd.metadata;
        user.locale = cmd.locale.map(|l| l.as_str().to_owned());
        profile(&user)?;
        self.store.insert_user(&user).await.map_err(taken)?;
        self.store.insert_event(&Event::new(EventKind::UserCreated, user.created_at).user(&user.id)).await?;
        Ok(user)
    }

    pub async fn user(&self, id: &UserId) -> Result<User, ServiceError> {
        Ok(self.store.user(id).await?.ok_or(Refusal::NotFound(Resource::User))?)
    }

    /// The user of an address, if there is one.
    pub async fn user_by_email(&self, email: &EmailAddress) -> Result<Option<User>, ServiceError> {
        Ok(self.store.user_by_email(email).await?)
    }

    /// The user of an address, created (not yet verified) when there is none: for sign-ins
    /// that name their user before the address is proven.
    pub async fn user_for_address(&self, email: &EmailAddress) -> Result<User, ServiceError> {
        if let Some(user) = self.user_by_email(email).await? {
            return Ok(user);
        }
        let new = NewUser { email: email.clone(), name: None, metadata: BTreeMap::new(), locale: None };
        match self.create_user(new).await {
            // Created meanwhile by another request.
            Err(ServiceError::Refused(Refusal::EmailTaken)) => {
                Ok(self.user_by_email(email).await?.ok_or(Refusal::NotFound(Resource::User))?)
            }
            other => other,
        }
    }

    pub async fn list_users(
        &self,
        after: Option<&UserId>,
        limit: PageSize,
    ) -> Result<Page<User>, ServiceError> {
        let items = self.store.list_users(after, limit.0).await?;
        Ok(Page::read(items, limit, |u| u.id.to_string()))
    }

    pub async fn update_user(&self, id: &UserId, change: UserChange) -> Result<User, ServiceError> {
        let mut user = self.user(id).await?;
        if let Some(address) = change.email
            && address != user.email
        {
            // A new address has not been proven yet.
            user.email = address;
            user.email_verified = false;
        }
        if let Some(name) = change.name {
            user.name = Some(name).filter(|n| !n.is_empty());
        }
        if let Some(metadata) = change.metadata {
            user.metadata = metadata;
        }
        if let Some(locale) = change.locale {
            user.locale = locale.map(|l| l.as_str().to_owned());
        }
        profile(&user)?;
        user.updated_at = self.clock.now();
        if !self.store.update_user(&user).await.map_err(taken)? {
            return Err(Refusal::NotFound(Resource::User).into());
        }
        self.store.insert_event(&Event::new(EventKind::UserUpdated, user.updated_at).user(&user.id)).await?;
        Ok(user)
    }

    pub async fn delete_user(&self, id: &UserId) -> Result<(), ServiceError> {
        if !self.store.delete_user(id).await? {
            return Err(Refusal::NotFound(Resource::User).into());
        }
        self.store.insert_event(&Event::new(EventKind::UserDeleted, self.clock.now()).user(id)).await?;
        Ok(())
    }

    /// The user's sessions: one refresh-token family each.
    pub async fn user_sessions(&self, id: &UserId) -> Result<Vec<RefreshToken>, ServiceError> {
        let user = self.user(id).await?;
        Ok(self.store.user_sessions(&user.id, self.clock.now()).await?)
    }

    pub async fn revoke_user_sessions(&self, id: &UserId) -> Result<u64, ServiceError> {
        let user = self.user(id).await?;
        let now = self.clock.now();
        let revoked = self.store.revoke_user_sessions(&user.id, now).await?;
        let event = Event::new(EventKind::SessionsRevoked, now).user(&user.id).with("revoked", revoked);
        self.store.insert_event(&event).await?;
        Ok(revoked)
    }

    pub async fn events(&self, after: Option<&str>, limit: PageSize) -> Result<Page<Event>, ServiceError> {
        if after.is_some_and(|a| a.len() > 64) {
            return Err(Refusal::invalid("after", "after must be an event id").into());
        }
        let items = self.store.events(after, limit.0).await?;
        Ok(Page::read(items, limit, |e| e.id.to_string()))
    }
}
