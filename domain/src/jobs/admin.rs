//! Dead letters for admins: list them, and put one back in the queue.

use super::model::{Job, JobStatus};
use crate::auth::Role;
use crate::error::{ServiceError, ServiceResult};
use crate::pagination::{Page, decode_cursor, encode_cursor, page_size};
use crate::services::{Caller, Services};
use entity::{job, job_delivery};
use sea_orm::sea_query::Expr;
use sea_orm::sea_query::ExprTrait as _;
use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect, TransactionTrait};
use uuid::Uuid;

impl Services {
    /// Dead-lettered jobs, most recent failure first, as a keyset page (ADMIN).
    /// Jobs carry ids and redacted errors, no PHI.
    pub async fn dead_letters(&self, caller: &Caller, first: i32, after: Option<&str>) -> ServiceResult<Page<Job>> {
        caller.actor()?.require(&[Role::Admin])?;
        let first = page_size(first)?;
        let after: Option<(chrono::DateTime<chrono::Utc>, Uuid)> = decode_cursor(after)?;
        let mut query = job::Entity::find()
            .filter(job::Column::Status.eq(JobStatus::Dead.code()))
            .order_by_desc(job::Column::UpdatedAt)
            .order_by_desc(job::Column::Id)
            .limit(first + 1);
        if let Some((at, id)) = after {
            query = query.filter(
                Condition::any().add(job::Column::UpdatedAt.lt(at)).add(
                    Condition::all()
                        .add(job::Column::UpdatedAt.eq(at))
                        .add(job::Column::Id.lt(id)),
                ),
            );
        }
        let rows = query.all(&self.db).await?;
        Page::from_rows(rows, first, |r| encode_cursor(&(r.updated_at, r.id)), Job::try_from)
    }

    /// Puts a dead letter back in the queue, due now, with its attempts reset
    /// (ADMIN). Channels that already went out stay sent; channels that failed
    /// for good are tried again.
    pub async fn retry_job(&self, caller: &Caller, id: Uuid) -> ServiceResult<Job> {
        caller.actor()?.require(&[Role::Admin])?;
        let now = self.clock.now();
        let txn = self.db.begin().await?;
        let changed = job::Entity::update_many()
            .col_expr(job::Column::Status, Expr::value(JobStatus::Pending.code()))
            .col_expr(job::Column::RunAt, Expr::value(now))
            .col_expr(job::Column::Attempts, Expr::value(0))
            .col_expr(
                job::Column::FinishedAt,
                Expr::value(None::<chrono::DateTime<chrono::Utc>>),
            )
            .col_expr(job::Column::UpdatedAt, Expr::value(now))
            .filter(job::Column::Id.eq(id))
            .filter(job::Column::Status.eq(JobStatus::Dead.code()))
            .exec(&txn)
            .await?;
        if changed.rows_affected != 1 {
            let exists = job::Entity::find_by_id(id).one(&txn).await?.is_some();
            return Err(if exists {
                ServiceError::InvalidTransition("only a dead letter can be retried".into())
            } else {
                ServiceError::NotFound("job")
            });
        }
        job_delivery::Entity::delete_many()
            .filter(job_delivery::Column::JobId.eq(id))
            .filter(job_delivery::Column::Status.eq(super::DeliveryStatus::Failed.code()))
            .exec(&txn)
            .await?;
        let row = job::Entity::find_by_id(id)
            .one(&txn)
            .await?
            .ok_or(ServiceError::NotFound("job"))?;
        txn.commit().await?;
        tracing::info!(job = %id, "dead letter put back in the queue");
        Job::try_from(row)
    }
}

/// Jobs waiting, running and dead, for the queue-depth gauge.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueDepth {
    /// Pending (due or not yet due).
    pub pending: u64,
    /// Claimed by a worker.
    pub running: u64,
    /// Dead letters.
    pub dead: u64,
}

impl Services {
    /// Counts jobs by state in one grouped query (no permission check: numbers
    /// only, for the metrics sampler).
    pub async fn queue_depth(&self) -> ServiceResult<QueueDepth> {
        #[derive(sea_orm::FromQueryResult)]
        struct Row {
            status: String,
            count: i64,
        }
        let rows = job::Entity::find()
            .select_only()
            .column(job::Column::Status)
            .column_as(Expr::col(job::Column::Id).count(), "count")
            .filter(job::Column::Status.is_in([
                JobStatus::Pending.code(),
                JobStatus::Running.code(),
                JobStatus::Dead.code(),
            ]))
            .group_by(job::Column::Status)
            .into_model::<Row>()
            .all(&self.db)
            .await?;
        let mut depth = QueueDepth::default();
        for row in rows {
            let count = u64::try_from(row.count).unwrap_or(0);
            match JobStatus::from_code(&row.status) {
                Some(JobStatus::Pending) => depth.pending = count,
                Some(JobStatus::Running) => depth.running = count,
                Some(JobStatus::Dead) => depth.dead = count,
                _ => {}
            }
        }
        Ok(depth)
    }
}
