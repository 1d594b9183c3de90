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
    Statement, TransactionTrait,
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
    /// Claim pending jobs after this `(run_at, id)` only: the worker's
    /// [`ClaimCursor`]; `None` claims from the oldest due job.
    pub after: Option<(DateTime<Utc>, Uuid)>,
}

/// Where a worker's next claim of pending jobs starts.
///
/// A claimed job's row leaves the partial index of pending jobs, but its old
/// entry stays at the front of that index until a vacuum removes it, and a
/// claim from the oldest due job walks every such entry before it finds a
/// live one: while a long queue drains, each claim walks more (3.8 ms of an
/// 8.6 ms claim of 200 after 180,000 jobs, BENCHMARKS.md). A worker that
/// goes on after the last job it claimed skips them. Jobs can become due
/// behind the cursor (put back at shutdown, written by an instance whose
/// clock is behind, retried by an admin), so a claim starts from the oldest
/// due job again at least every [`ClaimCursor::FULL_CLAIM_EVERY`], and
/// whenever the last claim came back short (the queue is drained past the
/// cursor). Only those full claims look for lapsed leases (a worker died):
/// the index of running jobs keeps an entry for every job that ran until a
/// vacuum removes it, and once those jobs' leases are past, a look for lapsed
/// ones walks them all (118 ms for 180,000, BENCHMARKS.md); a dead worker's
/// jobs wait at most a second longer for it.
#[derive(Clone, Debug, Default)]
pub struct ClaimCursor {
    /// The last `(run_at, id)` claimed since the last full claim.
    after: Option<(DateTime<Utc>, Uuid)>,
    /// When the last claim from the oldest due job ran.
    last_full: Option<DateTime<Utc>>,
}

impl ClaimCursor {
    /// The longest a job can wait behind the cursor.
    pub const FULL_CLAIM_EVERY: Duration = Duration::seconds(1);

    /// Where the claim at `now` starts (`ClaimOptions::after`).
    pub fn start(&self, now: DateTime<Utc>) -> Option<(DateTime<Utc>, Uuid)> {
        match self.last_full {
            Some(at) if now - at < Self::FULL_CLAIM_EVERY => self.after,
            _ => None,
        }
    }

    /// Moves past what the claim that started at `start` took at `now`.
    pub fn advance(
        &mut self,
        start: Option<(DateTime<Utc>, Uuid)>,
        claimed: &[ClaimedJob],
        limit: u32,
        now: DateTime<Utc>,
    ) {
        if start.is_none() {
            self.last_full = Some(now);
        }
        if claimed.len() < usize::try_from(limit).unwrap_or(usize::MAX) {
            // Drained past the cursor: the next claim starts from the oldest due job.
            self.after = None;
            self.last_full = None;
        } else {
            // Lapsed leases come back with older run_at: the latest is a pending job's.
            self.after = claimed.iter().map(|c| (c.job.run_at, c.job.id)).max();
        }
    }
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

/// The claim's plan, whatever the statistics say: each half walks its
/// partial index in order and stops at the limit. The planner costs other
/// plans from the table's statistics, which lag behind a queue: right after
/// 200,000 jobs arrived, before any analyze, it expected 75 due rows and
/// chose a bitmap scan and a sort of all 191,200 (146 ms for one claim,
/// against about 1 ms, BENCHMARKS.md). With bitmap scans and sorts off, the
/// ordered index walk is the plan it is left with. A plan that keeps a
/// disabled node (the lapsed half's sort of nothing) is costed above
/// `jit_above_cost`, and JIT compiling every claim took 44% of PostgreSQL's
/// time: JIT is off too (it never pays for a statement this short).
const CLAIM_PLAN: &str = "SET LOCAL enable_bitmapscan = off; SET LOCAL enable_sort = off; SET LOCAL jit = off";

/// Columns of `jobs`, for statements written by hand.
const COLUMNS: &str = "id, kind, payload, status, run_at, attempts, max_attempts, lease_owner, lease_until, \
                       last_error, appointment_id, dedupe_key, created_at, updated_at, finished_at, trace_parent";

impl Services {
    /// Claims up to `options.limit` due jobs for one lease: running jobs whose
    /// lease lapsed first (unless `options.after` is set), then pending jobs
    /// whose `run_at` passed, oldest first (after `options.after`, when set).
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
                "WITH lapsed AS (SELECT id FROM jobs WHERE $7 AND status = 'running' AND lease_until <= $3 \
                   ORDER BY lease_until LIMIT $4 FOR UPDATE SKIP LOCKED), \
                 due AS (SELECT id FROM jobs WHERE status = 'pending' AND run_at <= $3 \
                   AND (run_at, id) > ($5, $6) ORDER BY run_at, id LIMIT $4 FOR UPDATE SKIP LOCKED) \
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
                   SELECT id FROM (SELECT id FROM jobs WHERE ?7 AND status = 'running' AND lease_until <= ?3 \
                     ORDER BY lease_until LIMIT ?4) \
                   UNION ALL \
                   SELECT id FROM (SELECT id FROM jobs WHERE status = 'pending' AND run_at <= ?3 \
                     AND (run_at, id) > (?5, ?6) ORDER BY run_at, id LIMIT ?4)) LIMIT ?4) \
                 RETURNING {COLUMNS}"
            ),
        };
        // From the oldest due job: before any job's run_at (one statement text either way).
        let (after_run_at, after_id) = options.after.unwrap_or((DateTime::UNIX_EPOCH, Uuid::nil()));
        let statement = Statement::from_sql_and_values(
            backend,
            sql,
            [
                token.clone().into(),
                lease_until.into(),
                now.into(),
                i64::from(options.limit).into(),
                after_run_at.into(),
                after_id.into(),
                // Lapsed leases only on a claim from the oldest due job (see `ClaimCursor`).
                options.after.is_none().into(),
            ],
        );
        let rows = if backend == DbBackend::Postgres {
            let txn = self.db.begin().await?;
            txn.execute_unprepared(CLAIM_PLAN).await?;
            let rows = job::Model::find_by_statement(statement).all(&txn).await?;
            txn.commit().await?;
            rows
        } else {
            job::Model::find_by_statement(statement).all(&self.db).await?
        };
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::model::NoticePayload;

    fn claimed(run_at: DateTime<Utc>, id: u128) -> ClaimedJob {
        ClaimedJob {
            job: Job {
                id: Uuid::from_u128(id),
                kind: JobKind::Confirmation,
                status: JobStatus::Running,
                payload: NoticePayload {
                    appointment_id: Uuid::nil(),
                    version: 1,
                    offset_minutes: None,
                },
                run_at,
                attempts: 1,
                max_attempts: 5,
                last_error: None,
                appointment_id: None,
                created_at: run_at,
                updated_at: run_at,
                finished_at: None,
                trace_parent: None,
            },
            lease_token: "w:1".into(),
            lease_until: run_at + Duration::minutes(5),
        }
    }

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::UNIX_EPOCH + Duration::days(20_000) + Duration::seconds(seconds)
    }

    #[test]
    fn the_first_claim_starts_from_the_oldest_job() {
        assert_eq!(ClaimCursor::default().start(at(0)), None);
    }

    #[test]
    fn a_full_batch_moves_the_cursor_past_its_latest_job() {
        let mut cursor = ClaimCursor::default();
        // A lapsed lease (older run_at) comes back with the batch.
        let batch = [claimed(at(-50), 9), claimed(at(-10), 3), claimed(at(-10), 4)];
        cursor.advance(None, &batch, 3, at(0));
        assert_eq!(cursor.start(at(0)), Some((at(-10), Uuid::from_u128(4))));
        let next = [claimed(at(-9), 1), claimed(at(-8), 2), claimed(at(-8), 7)];
        cursor.advance(cursor.start(at(0)), &next, 3, at(0));
        assert_eq!(cursor.start(at(0)), Some((at(-8), Uuid::from_u128(7))));
    }

    #[test]
    fn a_full_claim_comes_round_at_least_every_second() {
        let mut cursor = ClaimCursor::default();
        cursor.advance(None, &[claimed(at(-10), 1)], 1, at(0));
        let just_before = at(0) + ClaimCursor::FULL_CLAIM_EVERY - Duration::milliseconds(1);
        assert!(cursor.start(just_before).is_some());
        // Cursor claims do not reset the clock of the full claim.
        cursor.advance(cursor.start(just_before), &[claimed(at(-9), 2)], 1, just_before);
        assert_eq!(cursor.start(at(0) + ClaimCursor::FULL_CLAIM_EVERY), None);
    }

    #[test]
    fn a_short_batch_sends_the_next_claim_back_to_the_oldest_job() {
        let mut cursor = ClaimCursor::default();
        cursor.advance(None, &[claimed(at(-10), 1), claimed(at(-10), 2)], 2, at(0));
        assert!(cursor.start(at(0)).is_some());
        cursor.advance(cursor.start(at(0)), &[claimed(at(-9), 3)], 2, at(0));
        assert_eq!(cursor.start(at(0)), None, "drained past the cursor");
        cursor.advance(None, &[], 2, at(0));
        assert_eq!(cursor.start(at(0)), None, "an empty queue");
    }
}
