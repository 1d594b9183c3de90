//! Providers: clinicians, each with a PROVIDER sign-in and the locations they work at.

use crate::auth::{NewUser, Role};
use crate::error::{ServiceError, ServiceResult};
use crate::ids::{LocationId, ProviderId};
use crate::pagination::{Page, decode_cursor, encode_cursor, page_size};
use crate::services::{Caller, Services};
use crate::validate;
use entity::{location, provider, provider_location};
use sea_orm::sea_query::{Expr, ExprTrait, Query};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, EntityTrait, IntoActiveModel, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, TransactionTrait,
};
use std::collections::HashMap;
use uuid::Uuid;

/// A provider as shown to clients.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Provider {
    /// Id.
    pub id: ProviderId,
    /// Display name.
    pub name: String,
    /// Where they work, sorted.
    pub location_ids: Vec<LocationId>,
}

/// Input of `createProvider`.
#[derive(Clone, Debug)]
pub struct NewProvider {
    /// Display name.
    pub name: String,
    /// Sign-in email.
    pub email: String,
    /// Initial password.
    pub password: String,
    /// Where they work (at least one).
    pub location_ids: Vec<LocationId>,
}

impl Services {
    /// Creates a provider and their PROVIDER sign-in (ADMIN).
    pub async fn create_provider(&self, caller: &Caller, input: NewProvider) -> ServiceResult<Provider> {
        caller.actor()?.require(&[Role::Admin])?;
        let name = validate::name("input.name", &input.name, 200)?;
        let mut location_ids = input.location_ids.clone();
        location_ids.sort();
        location_ids.dedup();
        if location_ids.is_empty() {
            return Err(ServiceError::bad_input(
                "input.locationIds",
                "at least one location is required",
            ));
        }
        let found = location::Entity::find()
            .filter(location::Column::Id.is_in(location_ids.iter().map(|l| l.0)))
            .count(&self.db)
            .await?;
        if found != location_ids.len() as u64 {
            return Err(ServiceError::bad_input("input.locationIds", "unknown location id"));
        }
        let id = ProviderId::new();
        let txn = self.db.begin().await?;
        provider::Model {
            id: id.0,
            name: name.clone(),
            created_at: self.clock.now(),
        }
        .into_active_model()
        .reset_all()
        .insert(&txn)
        .await?;
        provider_location::Entity::insert_many(location_ids.iter().map(|l| {
            provider_location::Model {
                provider_id: id.0,
                location_id: l.0,
            }
            .into_active_model()
            .reset_all()
        }))
        .exec_without_returning(&txn)
        .await?;
        self.insert_user(
            &txn,
            NewUser {
                email: &input.email,
                password: &input.password,
                role: Role::Provider,
                provider_id: Some(id.0),
                patient_id: None,
            },
            "input.email",
        )
        .await?;
        txn.commit().await?;
        Ok(Provider { id, name, location_ids })
    }

    /// One provider, or `None` (any signed-in caller).
    pub async fn provider(&self, caller: &Caller, id: ProviderId) -> ServiceResult<Option<Provider>> {
        caller.actor()?;
        Ok(self.providers_by_ids(&[id]).await?.into_iter().next())
    }

    /// Providers by id, in no particular order (for data loaders).
    pub async fn providers_by_ids(&self, ids: &[ProviderId]) -> ServiceResult<Vec<Provider>> {
        let rows = provider::Entity::find()
            .filter(provider::Column::Id.is_in(ids.iter().map(|p| p.0)))
            .all(&self.db)
            .await?;
        self.with_locations(rows).await
    }

    /// Providers by name, optionally of one location, as a keyset page.
    pub async fn providers(
        &self,
        caller: &Caller,
        location_id: Option<LocationId>,
        first: i32,
        after: Option<&str>,
    ) -> ServiceResult<Page<Provider>> {
        caller.actor()?;
        let first = page_size(first)?;
        let after: Option<(String, Uuid)> = decode_cursor(after)?;
        let mut query = provider::Entity::find()
            .order_by_asc(provider::Column::Name)
            .order_by_asc(provider::Column::Id)
            .limit(first + 1);
        if let Some((name, id)) = after {
            query = query.filter(
                Condition::any().add(provider::Column::Name.gt(name.clone())).add(
                    Condition::all()
                        .add(provider::Column::Name.eq(name))
                        .add(provider::Column::Id.gt(id)),
                ),
            );
        }
        if let Some(location_id) = location_id {
            query = query.filter(
                provider::Column::Id.in_subquery(
                    Query::select()
                        .column(provider_location::Column::ProviderId)
                        .from(provider_location::Entity)
                        .and_where(Expr::col(provider_location::Column::LocationId).eq(location_id.0))
                        .to_owned(),
                ),
            );
        }
        let rows = query.all(&self.replica).await?;
        let rows_with_locations = self.with_locations(rows).await?;
        Page::from_rows(rows_with_locations, first, |p| encode_cursor(&(&p.name, p.id.0)), Ok)
    }

    async fn with_locations(&self, rows: Vec<provider::Model>) -> ServiceResult<Vec<Provider>> {
        let links = provider_location::Entity::find()
            .filter(provider_location::Column::ProviderId.is_in(rows.iter().map(|r| r.id)))
            .order_by_asc(provider_location::Column::LocationId)
            .all(&self.db)
            .await?;
        let mut by_provider: HashMap<Uuid, Vec<LocationId>> = HashMap::new();
        for link in links {
            by_provider
                .entry(link.provider_id)
                .or_default()
                .push(link.location_id.into());
        }
        Ok(rows
            .into_iter()
            .map(|row| Provider {
                id: row.id.into(),
                location_ids: by_provider.remove(&row.id).unwrap_or_default(),
                name: row.name,
            })
            .collect())
    }
}
