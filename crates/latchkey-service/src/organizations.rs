//! Organizations (admin API), and choosing the organization of a sign-in.

use crate::{Refusal, Resource, Service, ServiceError};
use latchkey_core::EmailAddress;
use latchkey_core::bounded::excerpt;
use latchkey_core::event::{Event, EventKind};
use latchkey_core::id::OrgId;
use latchkey_core::organization::{MAX_DOMAINS, Organization, parse_domain, parse_slug};
use latchkey_store::StoreError;

const MAX_NAME: usize = 200;

#[derive(Debug, Clone, Default)]
pub struct NewOrganization {
    pub name: String,
    pub slug: String,
    pub domains: Vec<String>,
}

/// A change: only what is `Some` changes.
#[derive(Debug, Clone, Default)]
pub struct OrganizationChange {
    pub name: Option<String>,
    pub slug: Option<String>,
    pub domains: Option<Vec<String>>,
}

fn name(value: &str) -> Result<String, Refusal> {
    let value = value.trim();
    if value.is_empty() || value.chars().count() > MAX_NAME {
        return Err(Refusal::invalid("name", format!("name must have 1 to {MAX_NAME} characters")));
    }
    Ok(value.to_owned())
}

fn slug(value: &str) -> Result<String, Refusal> {
    parse_slug(value).ok_or_else(|| {
        Refusal::invalid("slug", "slug must have 1 to 63 lower-case letters, digits and inner hyphens")
    })
}

fn domains(values: &[String]) -> Result<Vec<String>, Refusal> {
    if values.len() > MAX_DOMAINS {
        return Err(Refusal::invalid("domains", format!("at most {MAX_DOMAINS} domains")));
    }
    let mut out: Vec<String> = Vec::with_capacity(values.len());
    for v in values {
        let d = parse_domain(v).ok_or_else(|| {
            Refusal::invalid("domains", format!("{:?} is not a domain name", excerpt(v, 60)))
        })?;
        if !out.contains(&d) {
            out.push(d);
        }
    }
    Ok(out)
}

fn conflict(e: StoreError) -> ServiceError {
    match e {
        StoreError::Conflict(_) => Refusal::OrganizationTaken.into(),
        other => other.into(),
    }
}

impl Service {
    pub async fn create_organization(&self, cmd: NewOrganization) -> Result<Organization, ServiceError> {
        let now = self.clock.now();
        let org = Organization {
            id: OrgId::generate(now),
            name: name(&cmd.name)?,
            slug: slug(&cmd.slug)?,
            domains: domains(&cmd.domains)?,
            created_at: now,
            updated_at: now,
        };
        self.store.insert_organization(&org).await.map_err(conflict)?;
        self.cache.org_by_domain.clear();
        let event = Event::new(EventKind::OrganizationCreated, now).subject(org.id.as_str());
        self.store.insert_event(&event).await?;
        Ok(org)
    }

    /// By id (`org_…`) or slug.
    pub async fn organization(&self, key: &str) -> Result<Organization, ServiceError> {
        let found = match OrgId::parse(key) {
            Some(id) => self.store.organization(&id).await?,
            None => self.store.organization_by_slug(key).await?,
        };
        Ok(found.ok_or(Refusal::NotFound(Resource::Organization))?)
    }

    pub async fn list_organizations(&self) -> Result<Vec<Organization>, ServiceError> {
        Ok(self.store.list_organizations().await?)
    }

    pub async fn update_organization(
        &self,
        key: &str,
        change: OrganizationChange,
    ) -> Result<Organization, ServiceError> {
        let mut org = self.organization(key).await?;
        if let Some(n) = change.name.as_deref() {
            org.name = name(n)?;
        }
        if let Some(s) = change.slug.as_deref() {
            org.slug = slug(s)?;
        }
        if let Some(d) = change.domains.as_deref() {
            org.domains = domains(d)?;
        }
        org.updated_at = self.clock.now();
        if !self.store.update_organization(&org).await.map_err(conflict)? {
            return Err(Refusal::NotFound(Resource::Organization).into());
        }
        self.cache.org_by_domain.clear();
        let event = Event::new(EventKind::OrganizationUpdated, org.updated_at).subject(org.id.as_str());
        self.store.insert_event(&event).await?;
        Ok(org)
    }

    pub async fn delete_organization(&self, key: &str) -> Result<(), ServiceError> {
        let org = self.organization(key).await?;
        if !self.store.delete_organization(&org.id).await? {
            return Err(Refusal::NotFound(Resource::Organization).into());
        }
        self.cache.org_by_domain.clear();
        let event = Event::new(EventKind::OrganizationDeleted, self.clock.now()).subject(org.id.as_str());
        self.store.insert_event(&event).await?;
        Ok(())
    }

    /// The organization owning a domain, from the cache when it was read a moment ago.
    async fn domain_organization(&self, domain: &str) -> Result<Option<OrgId>, ServiceError> {
        let now = self.clock.now();
        if let Some(org) = self.cache.org_by_domain.get(domain, now) {
            return Ok(org);
        }
        let org = self.store.organization_by_domain(domain).await?.map(|o| o.id);
        self.cache.org_by_domain.put(domain.to_owned(), org.clone(), now);
        Ok(org)
    }

    /// The organization of a sign-in: the one named (which must own the address's domain), else
    /// the one owning the domain, else none.
    pub(crate) async fn sign_in_organization(
        &self,
        named: Option<&str>,
        email: &EmailAddress,
    ) -> Result<Option<OrgId>, ServiceError> {
        let Some(named) = named else { return self.domain_organization(email.domain()).await };
        let org = match self.organization(named).await {
            Ok(org) => org,
            Err(ServiceError::Refused(Refusal::NotFound(_))) => {
                return Err(Refusal::OrganizationUnknown.into());
            }
            Err(e) => return Err(e),
        };
        if !org.owns(email) {
            return Err(Refusal::EmailOutsideOrganization.into());
        }
        Ok(Some(org.id))
    }
}
