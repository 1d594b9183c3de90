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
use super::model::MAX_APPOINTMENT_LENGTH;
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

/// Most windows one statement reads: 7 bound values each, far below either
/// database's limit on parameters.
pub(super) const MAX_WINDOWS: usize = 64;

/// Reads the snapshots `arounds` describe (at most [`MAX_WINDOWS`]), in one
/// statement on `conn`, in their order. A batch of bookings reads every
/// provider's facts at once: one round trip under the locks, not one each.
pub(super) async fn read_many(conn: &impl ConnectionTrait, arounds: &[Around<'_>]) -> ServiceResult<Vec<Snapshot>> {
    if arounds.is_empty() {
        return Ok(Vec::new());
    }
    if arounds.len() > MAX_WINDOWS {
        let mut all = Vec::with_capacity(arounds.len());
        for chunk in arounds.chunks(MAX_WINDOWS) {
            all.extend(Box::pin(read_many(conn, chunk)).await?);
        }
        return Ok(all);
    }
    let backend = conn.get_database_backend();
    let sql = statement_text(backend, arounds.len());
    let values = statement_values(backend, arounds);
    let rows = conn
        .query_all_raw(Statement::from_sql_and_values(backend, sql, values))
        .await?;

    let mut parts: Vec<(Vec<WeeklyRule>, Vec<NaiveDate>, RawOccupancy)> =
        arounds.iter().map(|_| Default::default()).collect();
    for row in rows {
        let window: i32 = row.try_get("", "w")?;
        let Some((rules, closed_dates, occupancy)) = usize::try_from(window).ok().and_then(|w| parts.get_mut(w)) else {
            continue;
        };
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
    arounds
        .iter()
        .zip(parts)
        .map(|(around, (rules, closed_dates, occupancy))| {
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
        })
        .collect()
}

/// Values bound per window (SQLite).
const WINDOW_VALUES: usize = 7;

/// The values of [`statement_text`]: `now` and the blocking statuses, then the
/// windows: on PostgreSQL as seven arrays (one statement text whatever the
/// batch size, so one prepared statement and one plan), on SQLite as a
/// `VALUES` row of seven each.
fn statement_values(backend: DbBackend, arounds: &[Around<'_>]) -> Vec<Value> {
    let statuses = blocking_codes();
    let mut values: Vec<Value> = Vec::with_capacity(1 + statuses.len() + arounds.len() * WINDOW_VALUES);
    values.push(arounds[0].now.into());
    values.extend(statuses.iter().map(|s| Value::from(*s)));
    let from = |a: &Around| a.interval.start - OCCUPANCY_MARGIN;
    let to = |a: &Around| a.interval.end + OCCUPANCY_MARGIN;
    // The earliest start of an appointment or hold that can reach `from`.
    let earliest = |a: &Around| from(a) - MAX_APPOINTMENT_LENGTH;
    if backend == DbBackend::Postgres {
        let ids =
            |id: &dyn Fn(&Around) -> Option<Uuid>| text_array(arounds.iter().map(|a| id(a).map(|u| u.to_string())));
        let instants = |at: &dyn Fn(&Around) -> DateTime<Utc>| {
            text_array(
                arounds
                    .iter()
                    .map(|a| Some(at(a).to_rfc3339_opts(chrono::SecondsFormat::Micros, true))),
            )
        };
        values.push(ids(&|a| Some(a.location.id)).into());
        values.push(ids(&|a| Some(a.provider)).into());
        values.push(instants(&from).into());
        values.push(instants(&to).into());
        values.push(ids(&|a| Some(a.user)).into());
        values.push(ids(&|a| a.moving).into());
        values.push(instants(&earliest).into());
    } else {
        for around in arounds {
            values.push(around.location.id.into());
            values.push(around.provider.into());
            values.push(from(around).into());
            values.push(to(around).into());
            values.push(around.user.into());
            values.push(around.moving.into());
            values.push(earliest(around).into());
        }
    }
    values
}

/// A PostgreSQL array literal of `items` (`NULL` for `None`), bound as text
/// and cast in the statement: one parameter for any number of elements.
/// Elements are ids and instants, which need no escaping.
pub(super) fn text_array(items: impl Iterator<Item = Option<String>>) -> String {
    let items: Vec<String> = items
        .map(|item| item.map_or_else(|| "NULL".to_owned(), |text| format!("\"{text}\"")))
        .collect();
    format!("{{{}}}", items.join(","))
}

/// The snapshot statement's text for `backend` and `windows` windows: built
/// once per process (and, on SQLite, per size), not per write.
fn statement_text(backend: DbBackend, windows: usize) -> &'static str {
    static POSTGRES: OnceLock<String> = OnceLock::new();
    static SQLITE: [OnceLock<String>; MAX_WINDOWS] = [const { OnceLock::new() }; MAX_WINDOWS];
    if backend == DbBackend::Postgres {
        return POSTGRES.get_or_init(|| build_statement_text(backend, windows));
    }
    SQLITE[windows.clamp(1, MAX_WINDOWS) - 1].get_or_init(|| build_statement_text(backend, windows))
}

/// Builds what [`statement_text`] keeps: the windows (numbered from 0 in
/// column `w`), each part of the snapshot joined to them. Appointments, time
/// off and holds are read per window through the provider's index (a
/// `LATERAL` subquery kept apart with `OFFSET 0`): the planner cannot see how
/// narrow each window's range is and would otherwise hash whole tables.
fn build_statement_text(backend: DbBackend, windows: usize) -> String {
    let statuses = blocking_codes();
    let pg = backend == DbBackend::Postgres;
    // Typed NULLs keep PostgreSQL's UNION columns typed; SQLite has no casts.
    let null = |ty: &str| if pg { format!("NULL::{ty}") } else { "NULL".to_owned() };
    let (int, ts, id, date) = (null("integer"), null("timestamptz"), null("uuid"), null("date"));
    let p = |n: usize| if pg { format!("${n}") } else { format!("?{n}") };
    let now = p(1);
    let status_list = (0..statuses.len()).map(|i| p(2 + i)).collect::<Vec<_>>().join(", ");
    let first = 2 + statuses.len();
    // w: window, l: location, pr: provider, f/t: occupancy read from/to,
    // u: the asking user, m: the appointment being moved (NULL when none),
    // lo: the earliest start of an appointment or hold that can reach f.
    let win = if pg {
        format!(
            "win AS MATERIALIZED (SELECT (x.n - 1)::integer AS w, x.l, x.pr, x.f, x.t, x.u, x.m, x.lo \
             FROM unnest({}::text::uuid[], {}::text::uuid[], {}::text::timestamptz[], {}::text::timestamptz[], \
             {}::text::uuid[], {}::text::uuid[], {}::text::timestamptz[]) WITH ORDINALITY AS x(l, pr, f, t, u, m, lo, n))",
            p(first),
            p(first + 1),
            p(first + 2),
            p(first + 3),
            p(first + 4),
            p(first + 5),
            p(first + 6)
        )
    } else {
        let rows = (0..windows)
            .map(|w| {
                let at = |k: usize| p(first + w * WINDOW_VALUES + k);
                format!(
                    "({w}, {}, {}, {}, {}, {}, {}, {})",
                    at(0),
                    at(1),
                    at(2),
                    at(3),
                    at(4),
                    at(5),
                    at(6)
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        format!("win(w, l, pr, f, t, u, m, lo) AS (VALUES {rows})")
    };
    // PostgreSQL: per window through a LATERAL subquery (see above). SQLite
    // has no LATERAL; its planner walks the index per window in any case.
    let per_window = |table: &str, alias: &str, columns: &str, filter: &str| {
        let range = format!("{alias}.provider_id = win.pr AND {alias}.start_at < win.t AND {alias}.end_at > win.f");
        if pg {
            format!(
                "win CROSS JOIN LATERAL (SELECT {columns} FROM {table} {alias} WHERE {range} {filter} OFFSET 0) {alias}"
            )
        } else {
            format!("win JOIN {table} {alias} ON {range} {filter}")
        }
    };
    // Time off may last weeks: unbounded below (a provider has little of it).
    // Appointments and holds last a type's length at most: the lower bound
    // keeps their index range to the window, not the provider's history.
    let time_off = per_window("time_off", "t", "t.start_at, t.end_at", "");
    let appointments = per_window(
        "appointments",
        "a",
        "a.start_at, a.end_at, a.appointment_type_id",
        &format!("AND a.start_at > win.lo AND a.status IN ({status_list}) AND (win.m IS NULL OR a.id <> win.m)"),
    );
    let holds = per_window(
        "holds",
        "h",
        "h.start_at, h.end_at, h.expires_at, h.held_by",
        &format!("AND h.start_at > win.lo AND (h.expires_at > {now} OR h.held_by = win.u)"),
    );
    format!(
        "WITH {win} \
         SELECT win.w AS w, {RULE} AS part, r.weekday AS a, r.start_minute AS b, r.end_minute AS c, {ts} AS s, {ts} AS e, {ts} AS x, {id} AS u, {date} AS d \
           FROM win JOIN availability_rules r ON r.location_id = win.l AND r.provider_id = win.pr \
         UNION ALL SELECT win.w, {CLOSED}, {int}, {int}, {int}, {ts}, {ts}, {ts}, {id}, c.closed_on \
           FROM win JOIN location_closed_dates c ON c.location_id = win.l \
         UNION ALL SELECT win.w, {TIME_OFF}, {int}, {int}, {int}, t.start_at, t.end_at, {ts}, {id}, {date} FROM {time_off} \
         UNION ALL SELECT win.w, {APPOINTMENT}, y.buffer_before_minutes, y.buffer_after_minutes, {int}, a.start_at, a.end_at, {ts}, {id}, {date} \
           FROM {appointments} LEFT JOIN appointment_types y ON y.id = a.appointment_type_id \
         UNION ALL SELECT win.w, {HOLD}, {int}, {int}, {int}, h.start_at, h.end_at, h.expires_at, h.held_by, {date} FROM {holds}"
    )
}
