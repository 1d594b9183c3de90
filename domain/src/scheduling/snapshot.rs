//! What a write (booking, hold, reschedule) checks one interval against, read
//! in one statement under the provider's lock: the provider's weekly rules at
//! the location, the location's closed dates, and what occupies the provider
//! around the interval (time off, appointments with their types' buffers,
//! holds). Slot search reads the same facts for many providers at once
//! through `store` and the cache; a write reads them for one provider, from
//! the primary, and every round trip under the lock is one that every other
//! writer of that provider waits for.

use super::availability::{Busy, Interval, Schedule, WeeklyRule};
use super::cache::RawOccupancy;
use super::store::{OCCUPANCY_MARGIN, blocking_codes, zone};
use crate::error::ServiceResult;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use entity::location;
use sea_orm::{ConnectionTrait, DbBackend, Statement, Value};
use std::sync::OnceLock;
use uuid::Uuid;

/// The facts about one provider around one interval.
#[derive(Debug)]
pub(super) struct Snapshot {
    /// The provider's schedule at the location; `None` without a rule there.
    pub schedule: Option<Schedule>,
    /// What occupies the provider: live holds of everyone, and the asking
    /// user's own holds whatever their expiry (a booking clears them).
    pub occupancy: RawOccupancy,
}

/// What the snapshot is of.
pub(super) struct Around<'a> {
    /// The location (its zone and closed dates).
    pub location: &'a location::Model,
    /// Whose time.
    pub provider: Uuid,
    /// The interval to check; occupancy is read around it.
    pub interval: super::availability::Interval,
    /// Now (live holds).
    pub now: DateTime<Utc>,
    /// The asking user (their expired holds are read too).
    pub user: Uuid,
    /// An appointment that does not count (the one being moved).
    pub moving: Option<Uuid>,
}

/// Which part of the snapshot a row is.
const RULE: i32 = 0;
const CLOSED: i32 = 1;
const TIME_OFF: i32 = 2;
const APPOINTMENT: i32 = 3;
const HOLD: i32 = 4;

/// Reads the snapshot `around` describes, in one statement on `conn`.
pub(super) async fn read(conn: &impl ConnectionTrait, around: Around<'_>) -> ServiceResult<Snapshot> {
    let backend = conn.get_database_backend();
    let from = around.interval.start - OCCUPANCY_MARGIN;
    let to = around.interval.end + OCCUPANCY_MARGIN;
    let statuses = blocking_codes();
    let sql = statement_text(backend, around.moving.is_some());
    let mut values: Vec<Value> = vec![
        around.location.id.into(),
        around.provider.into(),
        from.into(),
        to.into(),
        around.now.into(),
        around.user.into(),
        around.moving.unwrap_or_default().into(),
    ];
    values.extend(statuses.iter().map(|s| Value::from(*s)));
    let rows = conn
        .query_all_raw(Statement::from_sql_and_values(backend, sql, values))
        .await?;

    let mut rules = Vec::new();
    let mut closed_dates = Vec::new();
    let mut occupancy = RawOccupancy::default();
    for row in rows {
        let part: i32 = row.try_get("", "part")?;
        let int = |column: &str| -> ServiceResult<i32> { Ok(row.try_get::<Option<i32>>("", column)?.unwrap_or(0)) };
        let instant = |column: &str| -> ServiceResult<DateTime<Utc>> { Ok(row.try_get("", column)?) };
        let span = || -> ServiceResult<Interval> { Ok(Interval::new(instant("s")?, instant("e")?)) };
        match part {
            RULE => rules.push(WeeklyRule {
                weekday: u32::try_from(int("a")?).unwrap_or(0),
                start_minute: u32::try_from(int("b")?).unwrap_or(0),
                end_minute: u32::try_from(int("c")?).unwrap_or(0),
            }),
            CLOSED => closed_dates.push(row.try_get::<NaiveDate>("", "d")?),
            TIME_OFF => occupancy.time_off.push(span()?),
            APPOINTMENT => occupancy.busy.push(Busy {
                interval: span()?,
                buffer_before: Duration::minutes(int("a")?.into()),
                buffer_after: Duration::minutes(int("b")?.into()),
            }),
            HOLD => occupancy
                .holds
                .push((span()?, row.try_get::<Uuid>("", "u")?, instant("x")?)),
            _ => {}
        }
    }
    let schedule = if rules.is_empty() {
        None
    } else {
        Some(Schedule {
            zone: zone(around.location)?,
            rules,
            closed_dates,
        })
    };
    Ok(Snapshot { schedule, occupancy })
}

/// The snapshot statement's text for `backend`, with or without the clause
/// leaving out the appointment being moved: built once per process, not per
/// write (it depends on nothing else).
fn statement_text(backend: DbBackend, moving: bool) -> &'static str {
    static TEXTS: [OnceLock<String>; 4] = [const { OnceLock::new() }; 4];
    let slot = usize::from(backend == DbBackend::Postgres) * 2 + usize::from(moving);
    TEXTS[slot].get_or_init(|| build_statement_text(backend, moving))
}

/// Builds what [`statement_text`] keeps.
fn build_statement_text(backend: DbBackend, moving: bool) -> String {
    let statuses = blocking_codes();
    // Typed NULLs keep PostgreSQL's UNION columns typed; SQLite has no casts.
    let null = |ty: &str| match backend {
        DbBackend::Postgres => format!("NULL::{ty}"),
        _ => "NULL".to_owned(),
    };
    let (int, ts, id, date) = (null("integer"), null("timestamptz"), null("uuid"), null("date"));
    let p = |n: usize| match backend {
        DbBackend::Postgres => format!("${n}"),
        _ => format!("?{n}"),
    };
    // $1 location, $2 provider, $3 from, $4 to, $5 now, $6 user, $7 moving, $8.. statuses
    let moving = if moving {
        format!("AND a.id <> {}", p(7))
    } else {
        String::new()
    };
    let status_list = (0..statuses.len()).map(|i| p(8 + i)).collect::<Vec<_>>().join(", ");
    format!(
        "SELECT {RULE} AS part, r.weekday AS a, r.start_minute AS b, r.end_minute AS c, {ts} AS s, {ts} AS e, {ts} AS x, {id} AS u, {date} AS d \
           FROM availability_rules r WHERE r.location_id = {l} AND r.provider_id = {pr} \
         UNION ALL SELECT {CLOSED}, {int}, {int}, {int}, {ts}, {ts}, {ts}, {id}, c.closed_on \
           FROM location_closed_dates c WHERE c.location_id = {l} \
         UNION ALL SELECT {TIME_OFF}, {int}, {int}, {int}, t.start_at, t.end_at, {ts}, {id}, {date} \
           FROM time_off t WHERE t.provider_id = {pr} AND t.start_at < {to} AND t.end_at > {from} \
         UNION ALL SELECT {APPOINTMENT}, y.buffer_before_minutes, y.buffer_after_minutes, {int}, a.start_at, a.end_at, {ts}, {id}, {date} \
           FROM appointments a LEFT JOIN appointment_types y ON y.id = a.appointment_type_id \
           WHERE a.provider_id = {pr} AND a.status IN ({status_list}) AND a.start_at < {to} AND a.end_at > {from} {moving} \
         UNION ALL SELECT {HOLD}, {int}, {int}, {int}, h.start_at, h.end_at, h.expires_at, h.held_by, {date} \
           FROM holds h WHERE h.provider_id = {pr} AND h.start_at < {to} AND h.end_at > {from} \
           AND (h.expires_at > {now} OR h.held_by = {user})",
        l = p(1),
        pr = p(2),
        from = p(3),
        to = p(4),
        now = p(5),
        user = p(6),
    )
}
