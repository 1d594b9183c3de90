//! Writing, claiming and finishing jobs.
//!
//! A claim sets `status = running`, a fresh lease token and `lease_until`, and
//! counts the attempt, in one statement. Every later write about the job names
//! the token, so a worker whose lease lapsed (and whose job another worker took
//! over) cannot overwrite the new owner's outcome.

use super::backoff;
use super::model::{ClaimedJob, Job, JobKind, JobStatus, NewJob};
use crate::error::{ServiceError, ServiceResult};
use crate::services::Services;
use chrono::{DateTime, Duration, Utc};
use entity::job;
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, FromQueryResult, QueryFilter, QueryTrait,
    Statement,
};
use std::collections::HashSet;
use uuid::Uuid;

/// Writes `jobs` on `conn` (the caller's transaction) in one statement; a job
/// whose dedupe key is taken already is skipped. Each job continues the
/// current span's trace.
pub(crate) async fn enqueue_all(
    conn: &impl ConnectionTrait,
    jobs: Vec<NewJob>,
    now: DateTime<Utc>,
) -> ServiceResult<()> {
    // Most status changes enqueue nothing: no trace context to read then.
    if jobs.is_empty() {
        return Ok(());
    }
    let trace_parent = telemetry::context::current_traceparent();
    enqueue_traced(conn, jobs.into_iter().map(|job| (job, trace_parent.clone())), now).await
}

/// Writes `jobs` like [`enqueue_all`], each with the W3C `traceparent` of the
/// request it belongs to: a batch writer writes the jobs of many requests, so
/// its own span is the wrong parent for any of them.
pub(crate) async fn enqueue_traced(
    conn: &impl ConnectionTrait,
    jobs: impl IntoIterator<Item = (NewJob, Option<String>)>,
    now: DateTime<Utc>,
) -> ServiceResult<()> {
    // The worker's run of each job continues the trace of whoever wrote it.
    let rows = jobs
        .into_iter()
        .map(|(new, trace_parent)| {
            let payload = serde_json::to_value(&new.payload).map_err(ServiceError::internal)?;
            Ok(job::ActiveModel {
                id: Set(Uuid::now_v7()),
                kind: Set(new.kind.code().to_owned()),
                payload: Set(payload),
                status: Set(JobStatus::Pending.code().to_owned()),
                run_at: Set(new.run_at),
                attempts: Set(0),
                max_attempts: Set(new.max_attempts),
                lease_owner: Set(None),
                lease_until: Set(None),
                last_error: Set(None),
                appointment_id: Set(Some(new.payload.appointment_id)),
                dedupe_key: Set(Some(new.dedupe_key)),
                created_at: Set(now),
                updated_at: Set(now),
                finished_at: Set(None),
                trace_parent: Set(trace_parent),
            })
        })
        .collect::<ServiceResult<Vec<_>>>()?;
    if rows.is_empty() {
        return Ok(());
    }
    job::Entity::insert_many(rows)
        .on_conflict_do_nothing_on([job::Column::DedupeKey])
        .exec_without_returning(conn)
        .await?;
    Ok(())
}

/// Cancels the pending jobs of `appointment` of the given kinds (all when
/// empty). A job already running is left to its worker, which checks the
/// appointment again before it sends.
pub(crate) async fn cancel_pending(
    conn: &impl ConnectionTrait,
    appointment: Uuid,
    kinds: &[JobKind],
    now: DateTime<Utc>,
) -> ServiceResult<u64> {
    let mut update = job::Entity::update_many()
        .col_expr(job::Column::Status, Expr::value(JobStatus::Cancelled.code()))
        .col_expr(job::Column::FinishedAt, Expr::value(now))
        .col_expr(job::Column::UpdatedAt, Expr::value(now))
        .filter(job::Column::AppointmentId.eq(appointment))
        .filter(job::Column::Status.eq(JobStatus::Pending.code()));
    if !kinds.is_empty() {
        update = update.filter(job::Column::Kind.is_in(kinds.iter().map(|k| k.code())));
    }
    Ok(update.exec(conn).await?.rows_affected)
}

/// How a worker claims.
#[derive(Clone, Debug)]
pub struct ClaimOptions {
    /// Names the worker in lease tokens (for operators reading the table).
    pub worker_id: String,
    /// Most jobs to claim at once.
    pub limit: u32,
    /// How long a claim lasts.
    pub lease: Duration,
}

/// How a claimed job ended.
#[derive(Clone, Debug)]
pub enum Finish {
    /// Everything was sent or had nothing to send.
    Done {
        /// Why nothing was sent, when nothing was (kept in `last_error` for the record).
        note: Option<String>,
    },
    /// A failure worth retrying: back off, or dead-letter after the last attempt.
    Retry {
        /// What failed (already redacted).
        error: String,
    },
    /// A failure that retrying will not fix: dead-letter now.
    Dead {
        /// What failed (already redacted).
        error: String,
    },
    /// Not now (an SMS in quiet hours): run again at `until`; the attempt does not count.
    Defer {
        /// When to run again.
        until: DateTime<Utc>,
    },
    /// Put back untouched (the worker is shutting down); the attempt does not count.
    Release,
}

/// Columns of `jobs`, for statements written by hand.
const COLUMNS: &str = "id, kind, payload, status, run_at, attempts, max_attempts, lease_owner, lease_until, \
                       last_error, appointment_id, dedupe_key, created_at, updated_at, finished_at, trace_parent";

impl Services {
    /// Claims up to `options.limit` due jobs for one lease: running jobs whose
    /// lease lapsed first, then pending jobs whose `run_at` passed, oldest first.
    ///
    /// A lease token is written only here, together with `running`, and every
    /// way out of `running` clears it (or a later claim replaces it): a row
    /// carrying a token is running under that claim. Checks of a claim filter
    /// on the token alone for that reason.
    #[tracing::instrument(name = "jobs.claim", skip_all)]
    pub async fn claim_jobs(&self, options: &ClaimOptions) -> ServiceResult<Vec<ClaimedJob>> {
        let now = self.clock.now();
        let lease_until = now + options.lease;
        let token = format!("{}:{}", options.worker_id, Uuid::new_v4().simple());
        let backend = self.db.get_database_backend();
        let sql = match backend {
            // SKIP LOCKED: concurrent claimers pass over each other's rows instead of
            // waiting for them, and never claim the same row twice. Lapsed leases
            // (work a dead worker left) come first; then due pending jobs, oldest
            // first. Each half reads its own partial index (migration 000008), so a claim
            // touches only the rows it takes however long the queue is.
            DbBackend::Postgres => format!(
                "WITH lapsed AS (SELECT id FROM jobs WHERE status = 'running' AND lease_until <= $3 \
                   ORDER BY lease_until LIMIT $4 FOR UPDATE SKIP LOCKED), \
                 due AS (SELECT id FROM jobs WHERE status = 'pending' AND run_at <= $3 \
                   ORDER BY run_at, id LIMIT $4 FOR UPDATE SKIP LOCKED) \
                 UPDATE jobs SET status = 'running', lease_owner = $1, lease_until = $2, \
                 attempts = attempts + 1, updated_at = $3 \
                 WHERE id IN (SELECT id FROM (SELECT id FROM lapsed UNION ALL SELECT id FROM due) AS claim LIMIT $4) \
                 RETURNING {COLUMNS}"
            ),
            // One connection: this statement runs alone.
            _ => format!(
                "UPDATE jobs SET status = 'running', lease_owner = ?1, lease_until = ?2, \
                 attempts = attempts + 1, updated_at = ?3 \
                 WHERE id IN (SELECT id FROM ( \
                   SELECT id FROM (SELECT id FROM jobs WHERE status = 'running' AND lease_until <= ?3 \
                     ORDER BY lease_until LIMIT ?4) \
                   UNION ALL \
                   SELECT id FROM (SELECT id FROM jobs WHERE status = 'pending' AND run_at <= ?3 \
                     ORDER BY run_at, id LIMIT ?4)) LIMIT ?4) \
                 RETURNING {COLUMNS}"
            ),
        };
        let statement = Statement::from_sql_and_values(
            backend,
            sql,
            [
                token.clone().into(),
                lease_until.into(),
                now.into(),
                i64::from(options.limit).into(),
            ],
        );
        // One statement, committed on its own: one round trip, not three.
        let rows = job::Model::find_by_statement(statement).all(&self.db).await?;
        let mut claimed: Vec<ClaimedJob> = rows
            .into_iter()
            .map(|row| {
                Ok(ClaimedJob {
                    job: Job::try_from(row)?,
                    lease_token: token.clone(),
                    lease_until,
                })
            })
            .collect::<ServiceResult<_>>()?;
        claimed.sort_by_key(|c| (c.job.run_at, c.job.id));
        Ok(claimed)
    }

    /// Records how a claimed job ended. Answers false when the claim was no
    /// longer this worker's (its lease lapsed and another worker took the job).
    #[tracing::instrument(name = "jobs.finish", skip_all)]
    pub async fn finish_job(&self, claimed: &ClaimedJob, finish: Finish) -> ServiceResult<bool> {
        let now = self.clock.now();
        let job = &claimed.job;
        let mut update = job::Entity::update_many()
            .col_expr(job::Column::UpdatedAt, Expr::value(now))
            .col_expr(job::Column::LeaseOwner, Expr::value(None::<String>))
            .col_expr(job::Column::LeaseUntil, Expr::value(None::<DateTime<Utc>>));
        let status = match finish {
            Finish::Done { note } => {
                update = update
                    .col_expr(job::Column::FinishedAt, Expr::value(now))
                    .col_expr(job::Column::LastError, Expr::value(note));
                JobStatus::Done
            }
            Finish::Retry { error } if job.attempts < job.max_attempts => {
                let delay = backoff::random_delay(job.attempts, self.policy.backoff_base, self.policy.backoff_max);
                update = update
                    .col_expr(job::Column::RunAt, Expr::value(now + delay))
                    .col_expr(job::Column::LastError, Expr::value(error));
                JobStatus::Pending
            }
            Finish::Retry { error } | Finish::Dead { error } => {
                update = update
                    .col_expr(job::Column::FinishedAt, Expr::value(now))
                    .col_expr(job::Column::LastError, Expr::value(error));
                JobStatus::Dead
            }
            Finish::Defer { until } => {
                update = update
                    .col_expr(job::Column::RunAt, Expr::value(until))
                    .col_expr(job::Column::Attempts, Expr::col(job::Column::Attempts).sub(1));
                JobStatus::Pending
            }
            Finish::Release => {
                update = update.col_expr(job::Column::Attempts, Expr::col(job::Column::Attempts).sub(1));
                JobStatus::Pending
            }
        };
        let result = update
            .col_expr(job::Column::Status, Expr::value(status.code()))
            .filter(job::Column::Id.eq(job.id))
            .filter(job::Column::Status.eq(JobStatus::Running.code()))
            .filter(job::Column::LeaseOwner.eq(claimed.lease_token.as_str()))
            .exec(&self.db)
            .await?;
        Ok(result.rows_affected == 1)
    }

    /// Records that the claimed jobs `done` ended [`Finish::Done`] (each with
    /// its note), in one `UPDATE` per lease token and note (a claimed batch
    /// shares one token; most jobs have no note). Answers the ids it finished:
    /// a job missing from them was no longer this worker's (its lease lapsed
    /// and another worker took it).
    #[tracing::instrument(name = "jobs.finish_done", skip_all, fields(jobs = done.len()))]
    pub async fn finish_done(&self, done: &[(&ClaimedJob, Option<&str>)]) -> ServiceResult<HashSet<Uuid>> {
        let now = self.clock.now();
        let backend = self.db.get_database_backend();
        // (lease token, note) -> the jobs finished with that note under that claim.
        type Group<'a> = ((&'a str, Option<&'a str>), Vec<Uuid>);
        let mut groups: Vec<Group> = Vec::new();
        for (claimed, note) in done {
            let key = (claimed.lease_token.as_str(), *note);
            match groups.iter_mut().find(|(k, _)| *k == key) {
                Some((_, ids)) => ids.push(claimed.job.id),
                None => groups.push((key, vec![claimed.job.id])),
            }
        }
        let mut finished = HashSet::with_capacity(done.len());
        for ((token, note), ids) in groups {
            for chunk in ids.chunks(1000) {
                let mut update = job::Entity::update_many()
                    .col_expr(job::Column::Status, Expr::value(JobStatus::Done.code()))
                    .col_expr(job::Column::FinishedAt, Expr::value(now))
                    .col_expr(job::Column::LastError, Expr::value(note.map(str::to_owned)))
                    .col_expr(job::Column::UpdatedAt, Expr::value(now))
                    .col_expr(job::Column::LeaseOwner, Expr::value(None::<String>))
                    .col_expr(job::Column::LeaseUntil, Expr::value(None::<DateTime<Utc>>))
                    .filter(job::Column::Id.is_in(chunk.iter().copied()))
                    // The token alone means "running under this claim"; see `claim_jobs`.
                    .filter(job::Column::LeaseOwner.eq(token))
                    .into_query();
                // RETURNING (PostgreSQL, SQLite 3.35+) names exactly the rows this claim still held.
                update.returning_col(job::Column::Id);
                let rows = self.db.query_all_raw(backend.build(&update)).await?;
                for row in rows {
                    finished.insert(row.try_get::<Uuid>("", "id")?);
                }
            }
        }
        Ok(finished)
    }

    /// One job by id, without checks (workers and tests).
    pub async fn job_unchecked(&self, id: Uuid) -> ServiceResult<Option<Job>> {
        job::Entity::find_by_id(id)
            .one(&self.db)
            .await?
            .map(Job::try_from)
            .transpose()
    }

    /// The jobs of one appointment, oldest first, without checks (tests, tools).
    pub async fn jobs_of_appointment_unchecked(&self, appointment: Uuid) -> ServiceResult<Vec<Job>> {
        use sea_orm::QueryOrder;
        job::Entity::find()
            .filter(job::Column::AppointmentId.eq(appointment))
            .order_by_asc(job::Column::CreatedAt)
            .order_by_asc(job::Column::Id)
            .all(&self.db)
            .await?
            .into_iter()
            .map(Job::try_from)
            .collect()
    }
}
