//! Bookings are written in batches: group commit for the booking path.
//!
//! A booking that has passed its own checks and holds its turn (no earlier
//! booking of its provider overlapping it is in flight, `booking_turns`)
//! joins a queue. A few writers drain it: each takes what has gathered (up
//! to [`MAX_BATCH`]) of providers that no other batch is writing (so batches
//! in flight never wait for each other's provider locks) and writes it in
//! one transaction, with one statement per step for the whole
//! batch instead of per booking: the locks with the provider and patient
//! checks, the holds named, one snapshot read of every provider's schedule,
//! one multi-row insert of the appointments, then their history, jobs and
//! audit records, and one commit (one WAL flush). At low load a batch is one
//! booking and goes at once; under load, bookings wait for a writer while
//! the previous batches commit, and the next batch takes them all.
//!
//! Each booking keeps its own answer: a refusal (a taken interval, an unknown
//! patient, an expired hold) leaves the others alone. When the database fails
//! the batch as a whole, each of its bookings is written again as a batch of
//! its own, so a failure reaches only the booking it belongs to. Writers run
//! as tasks of their own: a client that disconnects does not cut a batch short.

use super::lock::lock_providers_of_bookings;
use super::model::NewBooking;
use super::slots::Request;
use super::status::AppointmentStatus;
use crate::auth::Actor;
use crate::error::{ServiceError, ServiceResult};
use crate::ids::AppointmentId;
use crate::jobs::enqueue_traced;
use crate::phi::{AuditAction, write_audits_of};
use crate::services::{Caller, Services};
use entity::{appointment, appointment_history, hold};
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, ConnectionTrait, DatabaseTransaction, EntityTrait, IntoActiveModel,
    QueryFilter, QueryTrait,
};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;
use tokio::sync::oneshot;
use uuid::Uuid;

/// Most bookings one transaction writes.
pub const MAX_BATCH: usize = 64;

/// Batches written at once: enough that one batch's commit overlaps the next
/// batch's statements, few enough to leave the pool to everything else.
const WRITERS: usize = 4;

/// Metric: bookings per written batch.
pub const BATCH_SIZE: &str = "careslot_booking_batch_size";

/// A booking ready to be written: its caller's checks passed, its turn held
/// by the caller until the answer comes back. Bookings of one provider may
/// share a batch: each is checked against those before it in the batch.
pub(super) struct PendingBooking {
    /// Who books (their request is audited with the booking).
    pub caller: Caller,
    /// The caller's actor.
    pub actor: Actor,
    /// What they asked for.
    pub input: NewBooking,
    /// The appointment type.
    pub kind: entity::appointment_type::Model,
    /// The input's fingerprint (idempotent retries).
    pub fingerprint: String,
    /// The caller's trace (W3C `traceparent`): the booking's jobs continue
    /// it, though a writer task of its own writes them.
    pub trace_parent: Option<String>,
}

type Answer = ServiceResult<appointment::Model>;

struct Queued {
    booking: PendingBooking,
    reply: oneshot::Sender<Answer>,
}

/// The queue of bookings waiting for a writer.
#[derive(Default)]
pub struct BookingBatches {
    state: Mutex<QueueState>,
}

impl std::fmt::Debug for BookingBatches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.lock();
        f.debug_struct("BookingBatches")
            .field("waiting", &state.waiting.len())
            .field("writing", &state.writing)
            .field("writers", &state.writers)
            .finish()
    }
}

#[derive(Default)]
struct QueueState {
    waiting: VecDeque<Queued>,
    /// Bookings in the batches being written.
    writing: usize,
    /// Writer tasks running.
    writers: usize,
    /// Providers of the batches being written. A waiting booking of one of
    /// them is left for the batch after: taken now, its batch would only
    /// queue on that provider's lock in the database behind the batch
    /// holding it, and the writers would take turns instead of overlapping.
    providers_writing: HashSet<Uuid>,
}

impl BookingBatches {
    fn lock(&self) -> std::sync::MutexGuard<'_, QueueState> {
        // The state is a queue and a count: a panic elsewhere leaves it whole.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Bookings handed to the writers and not yet answered: those waiting
    /// for a writer and those in the batches being written (how a test knows
    /// every booking it sent has reached the writers).
    pub fn pending(&self) -> usize {
        let state = self.lock();
        state.waiting.len() + state.writing
    }

    /// Bookings in the batches being written (how a test knows a writer has
    /// taken the booking it sent).
    pub fn writing(&self) -> usize {
        self.lock().writing
    }

    /// The next batch: waiting bookings, in arrival order, of providers no
    /// other batch is writing. `None` (and one writer fewer) when there are
    /// none; the bookings left waiting then belong to providers whose
    /// writers will take them when their batches end. `slot` is the writer's
    /// previous batch, counted out here.
    fn next_batch(&self, slot: &mut WriterSlot<'_>) -> Option<Vec<Queued>> {
        let mut state = self.lock();
        state.release(slot);
        let mut batch = Vec::new();
        // Bookings held back stay in place, in order; usually there are none,
        // and each taken booking is then the front one.
        let mut next = 0;
        while batch.len() < MAX_BATCH && next < state.waiting.len() {
            let provider = state.waiting[next].booking.input.provider_id.0;
            if state.providers_writing.contains(&provider) {
                next += 1;
                continue;
            }
            if !slot.providers.contains(&provider) {
                slot.providers.push(provider);
            }
            batch.extend(state.waiting.remove(next));
        }
        if batch.is_empty() {
            state.writers -= 1;
            slot.done = true;
            return None;
        }
        state.providers_writing.extend(slot.providers.iter().copied());
        slot.writing = batch.len();
        state.writing += batch.len();
        Some(batch)
    }
}

/// Counts a writer and its batch out if its task ends without draining (a panic).
struct WriterSlot<'a> {
    batches: &'a BookingBatches,
    /// Bookings of the batch in hand.
    writing: usize,
    /// Providers of the batch in hand.
    providers: Vec<Uuid>,
    /// The writer found nothing to take and has counted itself out.
    done: bool,
}

impl QueueState {
    /// Counts the batch in `slot` out: its bookings and its providers.
    fn release(&mut self, slot: &mut WriterSlot<'_>) {
        self.writing -= slot.writing;
        slot.writing = 0;
        for provider in slot.providers.drain(..) {
            self.providers_writing.remove(&provider);
        }
    }
}

impl Drop for WriterSlot<'_> {
    fn drop(&mut self) {
        if !self.done {
            let batches = self.batches;
            let mut state = batches.lock();
            state.writers -= 1;
            state.release(self);
        }
    }
}

impl Services {
    /// Writes `booking` with whatever else is waiting, and answers its row.
    pub(super) async fn write_booking(&self, booking: PendingBooking) -> Answer {
        let (reply, answer) = oneshot::channel();
        let start_writer = {
            let mut state = self.booking_batches.lock();
            state.waiting.push_back(Queued { booking, reply });
            let start = state.writers < WRITERS;
            if start {
                state.writers += 1;
            }
            start
        };
        if start_writer {
            let services = self.clone();
            tokio::spawn(async move { services.drain_bookings().await });
        }
        answer
            .await
            .map_err(|_| ServiceError::internal(anyhow::anyhow!("the booking writer stopped before answering")))?
    }

    /// A writer: batches until the queue is empty.
    async fn drain_bookings(&self) {
        let mut slot = WriterSlot {
            batches: &self.booking_batches,
            writing: 0,
            providers: Vec::new(),
            done: false,
        };
        loop {
            let Some(batch) = self.booking_batches.next_batch(&mut slot) else {
                return;
            };
            metrics::histogram!(BATCH_SIZE).record(batch.len() as f64);
            let (bookings, replies): (Vec<PendingBooking>, Vec<_>) =
                batch.into_iter().map(|q| (q.booking, q.reply)).unzip();
            let answers = self.book_batch(&bookings).await;
            for (reply, answer) in replies.into_iter().zip(answers) {
                // A caller that went away no longer wants its answer; its booking stands.
                let _ = reply.send(answer);
            }
        }
    }

    /// Writes `bookings` in one transaction; when the database fails it as a
    /// whole, each booking alone.
    #[tracing::instrument(name = "booking.batch", skip_all, fields(bookings = bookings.len()))]
    async fn book_batch(&self, bookings: &[PendingBooking]) -> Vec<Answer> {
        match self.book_together(bookings).await {
            Ok(answers) => answers,
            Err(err) if bookings.len() == 1 => vec![Err(err)],
            Err(err) => {
                tracing::warn!(error = %err, bookings = bookings.len(), "a booking batch failed; writing its bookings one by one");
                let mut answers = Vec::with_capacity(bookings.len());
                for booking in bookings {
                    let answer = match self.book_together(std::slice::from_ref(booking)).await {
                        Ok(mut one) => one.pop().unwrap_or_else(|| Err(no_answer())),
                        Err(err) => Err(err),
                    };
                    answers.push(answer);
                }
                answers
            }
        }
    }

    /// One transaction for `bookings`: the outer error fails them all (and
    /// nothing is written); each booking's refusal is its own answer.
    async fn book_together(&self, bookings: &[PendingBooking]) -> ServiceResult<Vec<Answer>> {
        let txn = super::lock::begin_writer(&self.db).await?;
        match self.book_in(&txn, bookings).await {
            Ok(answers) => {
                txn.commit().await.map_err(super::booking::booking_conflict)?;
                Ok(answers)
            }
            Err(err) => {
                if let Err(rollback) = txn.rollback().await {
                    tracing::warn!(error = %rollback, "rolling back a failed booking batch failed");
                }
                Err(err)
            }
        }
    }

    /// The checks and writes of `bookings` inside `txn`, a statement per step.
    async fn book_in(&self, txn: &DatabaseTransaction, bookings: &[PendingBooking]) -> ServiceResult<Vec<Answer>> {
        let now = self.clock.now();
        let pairs: Vec<_> = bookings
            .iter()
            .map(|b| (b.input.provider_id, b.input.patient_id))
            .collect();
        let mut refused: Vec<Option<ServiceError>> = lock_providers_of_bookings(txn, &pairs)
            .await?
            .into_iter()
            .map(Result::err)
            .collect();

        let holds = read_holds(txn, bookings, &refused).await?;
        for (booking, refusal) in bookings.iter().zip(refused.iter_mut()) {
            if refusal.is_none() {
                *refusal = check_hold(booking, &holds, now).err();
            }
        }

        let live: Vec<usize> = (0..bookings.len()).filter(|i| refused[*i].is_none()).collect();
        let requests: Vec<Request> = live
            .iter()
            .map(|i| {
                let b = &bookings[*i];
                Request {
                    provider: b.input.provider_id,
                    kind: &b.kind,
                    start: b.input.start,
                    user: b.actor.user_id.0,
                    moving: None,
                    start_field: "input.start",
                }
            })
            .collect();
        let checked = self.check_bookable_many(txn, &requests).await?;
        let mut rows: Vec<(usize, appointment::Model, bool)> = Vec::with_capacity(live.len());
        for (index, check) in live.into_iter().zip(checked) {
            match check {
                Ok(bookable) => {
                    let b = &bookings[index];
                    let row = appointment::Model {
                        id: AppointmentId::new().0,
                        provider_id: b.input.provider_id.0,
                        patient_id: b.input.patient_id.0,
                        location_id: bookable.location_id.0,
                        appointment_type_id: b.kind.id,
                        status: AppointmentStatus::Booked.code().to_owned(),
                        start_at: bookable.interval.start,
                        end_at: bookable.interval.end,
                        cancellation_reason: None,
                        idempotency_key: b.input.idempotency_key.clone(),
                        request_fingerprint: Some(b.fingerprint.clone()),
                        created_by: Some(b.actor.user_id.0),
                        version: 1,
                        created_at: now,
                        updated_at: now,
                    };
                    rows.push((index, row, bookable.own_holds));
                }
                Err(err) => refused[index] = Some(err),
            }
        }

        let inserted = insert_appointments(txn, rows.iter().map(|(_, row, _)| row)).await?;
        rows.retain(|(index, row, _)| {
            let kept = inserted.contains(&row.id);
            if !kept {
                // The exclusion constraint (another instance's booking) or an
                // idempotency key taken by a concurrent retry.
                refused[*index] = Some(ServiceError::SlotUnavailable("the interval was taken".into()));
            }
            kept
        });
        if rows.is_empty() {
            return Ok(answers(refused, rows));
        }

        clear_own_holds(txn, bookings, &rows).await?;
        appointment_history::Entity::insert_many(rows.iter().map(|(index, row, _)| {
            super::booking::history_row(row, &bookings[*index].actor, "book", None, None, None)
        }))
        .exec_without_returning(txn)
        .await?;
        let mut jobs = Vec::new();
        for (index, row, _) in &rows {
            let trace_parent = &bookings[*index].trace_parent;
            jobs.extend(
                self.booked_jobs(txn, row)
                    .await?
                    .into_iter()
                    .map(|job| (job, trace_parent.clone())),
            );
        }
        enqueue_traced(txn, jobs, now).await?;
        write_audits_of(
            txn,
            self.clock.as_ref(),
            rows.iter().map(|(index, row, _)| {
                let caller = &bookings[*index].caller;
                (
                    caller.actor.as_ref(),
                    &caller.meta,
                    super::booking::appointment_audit(AuditAction::Create, row.id, None),
                )
            }),
        )
        .await?;
        Ok(answers(refused, rows))
    }
}

fn no_answer() -> ServiceError {
    ServiceError::internal(anyhow::anyhow!("a booking batch answered no row"))
}

/// Each booking's answer: its row, or why it was refused.
fn answers(refused: Vec<Option<ServiceError>>, rows: Vec<(usize, appointment::Model, bool)>) -> Vec<Answer> {
    let mut written: HashMap<usize, appointment::Model> = rows.into_iter().map(|(i, row, _)| (i, row)).collect();
    refused
        .into_iter()
        .enumerate()
        .map(|(index, refusal)| match refusal {
            Some(err) => Err(err),
            None => written.remove(&index).ok_or_else(no_answer),
        })
        .collect()
}

/// The holds the still-live bookings name, by id, in one query.
async fn read_holds(
    txn: &DatabaseTransaction,
    bookings: &[PendingBooking],
    refused: &[Option<ServiceError>],
) -> ServiceResult<HashMap<Uuid, hold::Model>> {
    let ids: Vec<Uuid> = bookings
        .iter()
        .zip(refused)
        .filter(|(_, refusal)| refusal.is_none())
        .filter_map(|(b, _)| b.input.hold_id.map(|h| h.0))
        .collect();
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    Ok(hold::Entity::find()
        .filter(hold::Column::Id.is_in(ids))
        .all(txn)
        .await?
        .into_iter()
        .map(|h| (h.id, h))
        .collect())
}

/// The booking's hold, when it names one, must be the caller's, for this
/// provider, type and start, and live.
fn check_hold(
    booking: &PendingBooking,
    holds: &HashMap<Uuid, hold::Model>,
    now: chrono::DateTime<chrono::Utc>,
) -> ServiceResult<()> {
    let Some(hold_id) = booking.input.hold_id else {
        return Ok(());
    };
    let held = match holds.get(&hold_id.0) {
        Some(h) if h.held_by == booking.actor.user_id.0 => h,
        _ => return Err(ServiceError::NotFound("hold")),
    };
    if held.provider_id != booking.input.provider_id.0
        || held.appointment_type_id != booking.kind.id
        || held.start_at != booking.input.start
    {
        return Err(ServiceError::bad_input(
            "input.holdId",
            "the hold is for another provider, type or start",
        ));
    }
    if held.expires_at <= now {
        return Err(ServiceError::SlotUnavailable("the hold has expired".into()));
    }
    Ok(())
}

/// Inserts `rows` in one statement; answers the ids written. A row that
/// would overlap a committed booking (the exclusion constraint) or reuse an
/// idempotency key is skipped, not an error, so it fails alone.
async fn insert_appointments<'a>(
    txn: &DatabaseTransaction,
    rows: impl Iterator<Item = &'a appointment::Model>,
) -> ServiceResult<HashSet<Uuid>> {
    let models: Vec<_> = rows.map(|row| row.clone().into_active_model().reset_all()).collect();
    if models.is_empty() {
        return Ok(HashSet::new());
    }
    let mut insert = appointment::Entity::insert_many(models)
        .on_conflict(OnConflict::new().do_nothing().to_owned())
        .into_query();
    insert.returning_col(appointment::Column::Id);
    let backend = txn.get_database_backend();
    let written = txn.query_all_raw(backend.build(&insert)).await?;
    written
        .into_iter()
        .map(|row| Ok(row.try_get::<Uuid>("", "id")?))
        .collect()
}

/// The callers' own holds on the booked intervals have served their purpose.
async fn clear_own_holds(
    txn: &DatabaseTransaction,
    bookings: &[PendingBooking],
    rows: &[(usize, appointment::Model, bool)],
) -> ServiceResult<()> {
    let mut any = Condition::any();
    let mut some = false;
    for (index, row, own_holds) in rows {
        if !own_holds {
            continue;
        }
        some = true;
        any = any.add(
            Condition::all()
                .add(hold::Column::HeldBy.eq(bookings[*index].actor.user_id.0))
                .add(hold::Column::ProviderId.eq(row.provider_id))
                .add(hold::Column::StartAt.lt(row.end_at))
                .add(hold::Column::EndAt.gt(row.start_at)),
        );
    }
    if some {
        hold::Entity::delete_many().filter(any).exec(txn).await?;
    }
    Ok(())
}
