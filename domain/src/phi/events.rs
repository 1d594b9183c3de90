//! Reading the audit trail (ADMIN); the reading is itself audited.

use super::{AuditAction, AuditRecord};
use crate::auth::Role;
use crate::error::ServiceResult;
use crate::pagination::{Page, decode_cursor, encode_cursor, page_size};
use crate::services::{Caller, Services};
use chrono::{DateTime, Utc};
use entity::audit_log;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use uuid::Uuid;

/// Which audit records to list.
#[derive(Clone, Debug, Default)]
pub struct AuditFilter {
    /// Records about this kind of entity (`patient`, `appointment`, ...).
    pub entity_type: Option<String>,
    /// Records about this entity.
    pub entity_id: Option<Uuid>,
    /// Records of this user's actions.
    pub actor_user_id: Option<Uuid>,
    /// Records at or after this instant.
    pub from: Option<DateTime<Utc>>,
    /// Records before this instant.
    pub to: Option<DateTime<Utc>>,
}

impl Services {
    /// Audit records matching `filter`, newest first, as a keyset page (ADMIN).
    pub async fn audit_events(
        &self,
        caller: &Caller,
        filter: AuditFilter,
        first: i32,
        after: Option<&str>,
    ) -> ServiceResult<Page<audit_log::Model>> {
        caller.actor()?.require(&[Role::Admin])?;
        let first = page_size(first)?;
        let after: Option<i64> = decode_cursor(after)?;
        // Records are listed by chain position: link what has committed so far.
        super::chain_pending(&self.db).await?;
        let mut query = audit_log::Entity::find()
            .filter(audit_log::Column::Seq.is_not_null())
            .order_by_desc(audit_log::Column::Seq)
            .limit(first + 1);
        if let Some(seq) = after {
            query = query.filter(audit_log::Column::Seq.lt(seq));
        }
        if let Some(kind) = &filter.entity_type {
            query = query.filter(audit_log::Column::EntityType.eq(kind.as_str()));
        }
        if let Some(id) = filter.entity_id {
            query = query.filter(audit_log::Column::EntityId.eq(id));
        }
        if let Some(actor) = filter.actor_user_id {
            query = query.filter(audit_log::Column::ActorUserId.eq(actor));
        }
        if let Some(from) = filter.from {
            query = query.filter(audit_log::Column::OccurredAt.gte(from));
        }
        if let Some(to) = filter.to {
            query = query.filter(audit_log::Column::OccurredAt.lt(to));
        }
        let rows = query.all(&self.db).await?;
        let page = Page::from_rows(rows, first, |r| encode_cursor(&r.seq), Ok)?;
        self.audit(
            &self.db,
            caller,
            AuditRecord {
                action: AuditAction::Search,
                entity_type: "audit_log",
                entity_id: None,
                detail: Some(serde_json::json!({ "count": page.items.len() })),
            },
        )
        .await?;
        Ok(page)
    }
}
