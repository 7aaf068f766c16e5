//! Users (admin API): create, read, list by cursor, change, delete; their sessions; the events.

use super::fields::{self, taken};
use super::{Service, ServiceError};
use latchkey_core::User;
use latchkey_core::event::{Event, EventKind};
use latchkey_core::id::UserId;
use latchkey_core::refresh::RefreshToken;
use latchkey_core::user::check_profile;
use serde::Deserialize;
use std::collections::BTreeMap;

pub const DEFAULT_PAGE: u32 = 20;
pub const MAX_PAGE: u32 = 100;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct UserInput {
    pub email: Option<String>,
    pub name: Option<String>,
    pub metadata: Option<BTreeMap<String, String>>,
    /// The language of the user's e-mails (`fr`, `pt-BR`); an empty string clears it.
    pub locale: Option<String>,
}

/// A page of a list and the cursor of the next one, if any.
#[derive(Debug)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
}

fn page_size(limit: Option<u32>) -> Result<u32, ServiceError> {
    match limit.unwrap_or(DEFAULT_PAGE) {
        n @ 1..=MAX_PAGE => Ok(n),
        _ => Err(ServiceError::invalid("limit", format!("limit must be between 1 and {MAX_PAGE}"))),
    }
}

impl Service {
    pub async fn create_user(&self, input: UserInput) -> Result<User, ServiceError> {
        let address = fields::email(input.email.as_deref())?;
        let mut user = User::new(address, self.clock.now());
        user.name = input.name;
        user.metadata = input.metadata.unwrap_or_default();
        user.locale = super::templates::request_locale("locale", input.locale.as_deref())?
            .map(|l| l.as_str().to_owned());
        check_profile(user.name.as_deref(), &user.metadata)
            .map_err(|m| ServiceError::invalid("metadata", m))?;
        self.store.insert_user(&user).await.map_err(taken)?;
        self.store.insert_event(&Event::new(EventKind::UserCreated, user.created_at).user(&user.id)).await?;
        Ok(user)
    }

    pub async fn user(&self, id: &str) -> Result<User, ServiceError> {
        let id = UserId::parse(id).ok_or(ServiceError::NotFound("user"))?;
        self.store.user(&id).await?.ok_or(ServiceError::NotFound("user"))
    }

    pub async fn list_users(
        &self,
        after: Option<&str>,
        limit: Option<u32>,
    ) -> Result<Page<User>, ServiceError> {
        let limit = page_size(limit)?;
        let after = after
            .map(|a| {
                UserId::parse(a).ok_or_else(|| ServiceError::invalid("after", "after must be a user id"))
            })
            .transpose()?;
        let items = self.store.list_users(after.as_ref(), limit).await?;
        let next = (items.len() == limit as usize).then(|| items.last().map(|u| u.id.to_string())).flatten();
        Ok(Page { items, next })
    }

    pub async fn update_user(&self, id: &str, input: UserInput) -> Result<User, ServiceError> {
        let mut user = self.user(id).await?;
        if let Some(e) = input.email.as_deref() {
            let address = fields::email(Some(e))?;
            if address != user.email {
                // A new address has not been proven yet.
                user.email = address;
                user.email_verified = false;
            }
        }
        if let Some(name) = input.name {
            user.name = Some(name).filter(|n| !n.is_empty());
        }
        if let Some(metadata) = input.metadata {
            user.metadata = metadata;
        }
        if input.locale.is_some() {
            user.locale = super::templates::request_locale("locale", input.locale.as_deref())?
                .map(|l| l.as_str().to_owned());
        }
        check_profile(user.name.as_deref(), &user.metadata)
            .map_err(|m| ServiceError::invalid("metadata", m))?;
        user.updated_at = self.clock.now();
        if !self.store.update_user(&user).await.map_err(taken)? {
            return Err(ServiceError::NotFound("user"));
        }
        self.store.insert_event(&Event::new(EventKind::UserUpdated, user.updated_at).user(&user.id)).await?;
        Ok(user)
    }

    pub async fn delete_user(&self, id: &str) -> Result<(), ServiceError> {
        let id = UserId::parse(id).ok_or(ServiceError::NotFound("user"))?;
        if !self.store.delete_user(&id).await? {
            return Err(ServiceError::NotFound("user"));
        }
        self.store.insert_event(&Event::new(EventKind::UserDeleted, self.clock.now()).user(&id)).await?;
        Ok(())
    }

    /// The user's sessions: one refresh-token family each.
    pub async fn user_sessions(&self, id: &str) -> Result<Vec<RefreshToken>, ServiceError> {
        let user = self.user(id).await?;
        Ok(self.store.user_sessions(&user.id, self.clock.now()).await?)
    }

    pub async fn revoke_user_sessions(&self, id: &str) -> Result<u64, ServiceError> {
        let user = self.user(id).await?;
        let now = self.clock.now();
        let revoked = self.store.revoke_user_sessions(&user.id, now).await?;
        let event = Event::new(EventKind::SessionsRevoked, now)
            .user(&user.id)
            .detail(serde_json::json!({ "revoked": revoked }));
        self.store.insert_event(&event).await?;
        Ok(revoked)
    }

    pub async fn events(&self, after: Option<&str>, limit: Option<u32>) -> Result<Page<Event>, ServiceError> {
        let limit = page_size(limit)?;
        if after.is_some_and(|a| a.len() > 64) {
            return Err(ServiceError::invalid("after", "after must be an event id"));
        }
        let items = self.store.events(after, limit).await?;
        let next = (items.len() == limit as usize).then(|| items.last().map(|e| e.id.to_string())).flatten();
        Ok(Page { items, next })
    }
}
