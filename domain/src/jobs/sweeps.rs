//! Pruning finished jobs after the retention period. Dead letters stay until an
//! admin retries them; pending and running jobs are never touched.

use super::model::JobStatus;
use crate::error::ServiceResult;
use crate::services::Services;
use entity::job;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

impl Services {
    /// Deletes done and cancelled jobs that finished more than the retention
    /// period ago (their delivery records go with them). Safe to run from
    /// several workers at once: a row is deleted once.
    pub async fn prune_finished_jobs(&self) -> ServiceResult<u64> {
        let cutoff = self.clock.now() - self.policy.job_retention;
        let result = job::Entity::delete_many()
            .filter(job::Column::Status.is_in([JobStatus::Done.code(), JobStatus::Cancelled.code()]))
            .filter(job::Column::FinishedAt.lt(cutoff))
            .exec(&self.db)
            .await?;
        Ok(result.rows_affected)
    }
}
