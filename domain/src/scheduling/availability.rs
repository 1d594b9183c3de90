//! Slot computation: a pure function of weekly rules, time off, closed dates,
//! booked appointments, holds and the clock. No I/O, so every rule (DST, buffers,
//! notice) is unit-tested here.
//!
//! Weekly rules are wall-clock times in the location's time zone. Each day's rule
//! becomes an interval of instants; touching intervals merge (so a night shift
//! split at midnight is one window); slots start at the window's start and step
//! by the grid in absolute time, so a DST change inside a window neither loses
//! nor invents an hour.
//!
//! Wall-clock times that do not exist (the spring-forward gap) map to the first
//! instant after the gap; ambiguous ones (the fall-back overlap) map to their
//! first occurrence, when the clock first shows them.

use chrono::{DateTime, Datelike, Duration, LocalResult, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;

/// A half-open interval of instants, `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Interval {
    /// First instant inside.
    pub start: DateTime<Utc>,
    /// First instant after.
    pub end: DateTime<Utc>,
}

impl Interval {
    /// `[start, end)`.
    pub fn new(start: DateTime<Utc>, end: DateTime<Utc>) -> Self {
        Self { start, end }
    }

    /// True when the two share at least one instant.
    pub fn overlaps(&self, other: &Interval) -> bool {
        self.start < other.end && other.start < self.end
    }

    /// The interval widened by `before` and `after`.
    pub fn padded(&self, before: Duration, after: Duration) -> Self {
        Self::new(self.start - before, self.end + after)
    }
}

/// A weekly opening: ISO weekday (1 = Monday) and minutes after local midnight,
/// `end_minute` exclusive and at most 1440.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WeeklyRule {
    /// 1 = Monday ... 7 = Sunday.
    pub weekday: u32,
    /// Start, minutes after local midnight.
    pub start_minute: u32,
    /// End, minutes after local midnight (exclusive, up to 1440).
    pub end_minute: u32,
}

/// The rules of one provider at one location, and where that location is.
#[derive(Clone, Debug)]
pub struct Schedule {
    /// The location's time zone.
    pub zone: Tz,
    /// The weekly rules.
    pub rules: Vec<WeeklyRule>,
    /// Local dates the location is closed.
    pub closed_dates: Vec<NaiveDate>,
}

/// An appointment that occupies the provider, with the buffers of its type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Busy {
    /// The appointment's own interval.
    pub interval: Interval,
    /// Free time its type keeps before it.
    pub buffer_before: Duration,
    /// Free time its type keeps after it.
    pub buffer_after: Duration,
}

/// What is being booked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotSpec {
    /// Length of the visit.
    pub duration: Duration,
    /// Distance between slot starts.
    pub step: Duration,
    /// Free time to keep before the visit.
    pub buffer_before: Duration,
    /// Free time to keep after the visit.
    pub buffer_after: Duration,
    /// Earliest start: now plus the minimum notice.
    pub earliest_start: DateTime<Utc>,
    /// Latest start: now plus the furthest bookable distance, if any.
    pub latest_start: Option<DateTime<Utc>>,
}

/// What occupies the provider's time.
#[derive(Clone, Debug, Default)]
pub struct Occupancy {
    /// Time off.
    pub time_off: Vec<Interval>,
    /// Appointments in blocking statuses.
    pub busy: Vec<Busy>,
    /// Live holds of other callers.
    pub holds: Vec<Interval>,
}

/// The working windows of `schedule` that meet `range`, merged where they touch.
pub fn windows(schedule: &Schedule, range: Interval) -> Vec<Interval> {
    let first = range.start.with_timezone(&schedule.zone).date_naive() - Duration::days(1);
    let last = range.end.with_timezone(&schedule.zone).date_naive() + Duration::days(1);
    let mut windows: Vec<Interval> = Vec::new();
    let mut day = first;
    while day <= last {
        if !schedule.closed_dates.contains(&day) {
            let weekday = day.weekday().number_from_monday();
            for rule in schedule.rules.iter().filter(|r| r.weekday == weekday) {
                let start = local_instant(schedule.zone, day, rule.start_minute);
                let end = local_instant(schedule.zone, day, rule.end_minute);
                if start < end {
                    windows.push(Interval::new(start, end));
                }
            }
        }
        day += Duration::days(1);
    }
    windows.sort();
    let mut merged: Vec<Interval> = Vec::with_capacity(windows.len());
    for window in windows {
        match merged.last_mut() {
            Some(last) if window.start <= last.end => last.end = last.end.max(window.end),
            _ => merged.push(window),
        }
    }
    merged.retain(|w| w.overlaps(&range));
    merged
}

/// Where a slot start stands relative to the grid of the windows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GridPosition {
    /// A slot of the grid starts here and fits in its window.
    OnGrid,
    /// Inside a window, but not at a grid point.
    OffGrid,
    /// Outside every window (closed, off hours, a DST gap).
    Outside,
}

/// Classifies `start` against the grid of `windows`.
pub fn grid_position(windows: &[Interval], spec: &SlotSpec, start: DateTime<Utc>) -> GridPosition {
    let end = start + spec.duration;
    let Some(window) = windows.iter().find(|w| w.start <= start && end <= w.end) else {
        return GridPosition::Outside;
    };
    let offset = (start - window.start).num_seconds();
    if offset % spec.step.num_seconds().max(1) == 0 {
        GridPosition::OnGrid
    } else {
        GridPosition::OffGrid
    }
}

/// The free slot starts of one provider at one location inside `range` (whole
/// slots only), in order.
///
/// Slots start at each window's start and step by the grid; the walk starts at
/// the first grid point inside `range` (a day's search of a round-the-clock
/// schedule meets a window of three merged days) and runs on integer
/// microseconds (see [`Conflicts`]).
pub fn free_slots(schedule: &Schedule, spec: &SlotSpec, occupancy: &Occupancy, range: Interval) -> Vec<Interval> {
    let mut slots = Vec::new();
    let (Some(step), Some(duration)) = (spec.step.num_microseconds(), spec.duration.num_microseconds()) else {
        return slots;
    };
    if step <= 0 || duration <= 0 {
        return slots;
    }
    let conflicts = Conflicts::of(spec, occupancy);
    let (first_start, last_end) = (ceil_micros(range.start), floor_micros(range.end));
    for window in windows(schedule, range) {
        // Window bounds are whole minutes (local wall-clock times): exact.
        let mut start = floor_micros(window.start);
        if start < first_start {
            start += (first_start - start + step - 1) / step * step;
        }
        let last_start = floor_micros(window.end).min(last_end) - duration;
        while start <= last_start {
            if conflicts.allow(start, start + duration) {
                slots.push(Interval::new(from_micros(start), from_micros(start + duration)));
            }
            start += step;
        }
    }
    slots
}

/// True when `slot` respects notice, the furthest date, time off, holds, and
/// every appointment with both sides' buffers.
pub fn is_free(spec: &SlotSpec, occupancy: &Occupancy, slot: Interval) -> bool {
    // The rule lives in `Conflicts`; a slot whose bounds are not whole
    // microseconds (never one of the grid) is judged at its outer microseconds.
    Conflicts::of(spec, occupancy).allow(floor_micros(slot.start), ceil_micros(slot.end))
}

/// What a slot must keep clear of, in microseconds since the epoch.
///
/// Slots lie on whole microseconds (whole minutes, in fact), so comparing a
/// slot `[s, e)` with an instant that has finer digits stays exact when that
/// instant is rounded the right way: a start down (`t < e` exactly when
/// `floor(t) < e`), an end up (`s < t` exactly when `s < ceil(t)`), the
/// earliest start up, the latest start down.
struct Conflicts {
    /// Earliest allowed start (notice).
    earliest: i64,
    /// Latest allowed start (furthest date).
    latest: Option<i64>,
    /// Intervals a slot may not meet: time off, holds, and appointments
    /// widened by their own types' buffers.
    blocked: Vec<(i64, i64)>,
    /// Appointments as they are, which the slot widened by its own type's
    /// buffers may not meet.
    appointments: Vec<(i64, i64)>,
    /// The slot type's buffers.
    before: i64,
    after: i64,
}

impl Conflicts {
    fn of(spec: &SlotSpec, occupancy: &Occupancy) -> Self {
        let span = |i: &Interval| (floor_micros(i.start), ceil_micros(i.end));
        let blocked = occupancy
            .time_off
            .iter()
            .chain(&occupancy.holds)
            .map(span)
            .chain(
                occupancy
                    .busy
                    .iter()
                    .map(|b| span(&b.interval.padded(b.buffer_before, b.buffer_after))),
            )
            .collect();
        Self {
            earliest: ceil_micros(spec.earliest_start),
            latest: spec.latest_start.map(floor_micros),
            blocked,
            appointments: occupancy.busy.iter().map(|b| span(&b.interval)).collect(),
            before: micros(spec.buffer_before),
            after: micros(spec.buffer_after),
        }
    }

    /// True when the slot `[start, end)` conflicts with nothing.
    fn allow(&self, start: i64, end: i64) -> bool {
        let meets = |(from, to): &(i64, i64), start: i64, end: i64| *from < end && start < *to;
        start >= self.earliest
            && self.latest.is_none_or(|latest| start <= latest)
            && !self.blocked.iter().any(|b| meets(b, start, end))
            && !self
                .appointments
                .iter()
                .any(|a| meets(a, start - self.before, end + self.after))
    }
}

/// Microseconds since the epoch, rounded down.
fn floor_micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

/// Microseconds since the epoch, rounded up.
fn ceil_micros(t: DateTime<Utc>) -> i64 {
    let micros = t.timestamp_micros();
    if t.timestamp_subsec_nanos().is_multiple_of(1000) {
        micros
    } else {
        micros + 1
    }
}

/// A duration in microseconds (saturating: buffers and steps are minutes).
fn micros(d: Duration) -> i64 {
    d.num_microseconds().unwrap_or(i64::MAX / 4)
}

/// The instant `micros` microseconds after the epoch.
fn from_micros(micros: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(micros).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// The instant of `minute` minutes after local midnight of `day` in `zone`.
fn local_instant(zone: Tz, day: NaiveDate, minute: u32) -> DateTime<Utc> {
    let (day, minute) = if minute >= 1440 {
        (day + Duration::days(1), minute - 1440)
    } else {
        (day, minute)
    };
    let time = NaiveTime::from_hms_opt(minute / 60, minute % 60, 0).unwrap_or(NaiveTime::MIN);
    let local = day.and_time(time);
    match zone.from_local_datetime(&local) {
        LocalResult::Single(t) => t.to_utc(),
        LocalResult::Ambiguous(first, _) => first.to_utc(),
        LocalResult::None => {
            // In a gap: the first instant after it. Gaps are at most a few hours;
            // walk forward minute by minute until the clock exists again.
            let mut probe = local;
            for _ in 0..(24 * 60) {
                probe += Duration::minutes(1);
                if let Some(t) = zone.from_local_datetime(&probe).earliest() {
                    return t.to_utc();
                }
            }
            Utc.from_utc_datetime(&local)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).expect("rfc3339").to_utc()
    }

    fn schedule(zone: Tz, rules: &[(u32, &str, &str)]) -> Schedule {
        let minute = |t: &str| {
            let (h, m) = t.split_once(':').expect("HH:MM");
            h.parse::<u32>().expect("h") * 60 + m.parse::<u32>().expect("m")
        };
        Schedule {
            zone,
            rules: rules
                .iter()
                .map(|(weekday, start, end)| WeeklyRule {
                    weekday: *weekday,
                    start_minute: minute(start),
                    end_minute: minute(end),
                })
                .collect(),
            closed_dates: vec![],
        }
    }

    fn spec(minutes: i64) -> SlotSpec {
        SlotSpec {
            duration: Duration::minutes(minutes),
            step: Duration::minutes(minutes),
            buffer_before: Duration::zero(),
            buffer_after: Duration::zero(),
            earliest_start: utc("2000-01-01T00:00:00Z"),
            latest_start: None,
        }
    }

    fn starts(slots: &[Interval]) -> Vec<String> {
        slots
            .iter()
            .map(|s| s.start.format("%Y-%m-%dT%H:%MZ").to_string())
            .collect()
    }

    fn day(start: &str, end: &str) -> Interval {
        Interval::new(utc(start), utc(end))
    }

    #[test]
    fn weekly_rule_in_local_time() {
        // Wednesday 2026-11-25, New York is UTC-5.
        let s = schedule(chrono_tz::America::New_York, &[(3, "09:00", "11:00")]);
        let slots = free_slots(
            &s,
            &spec(30),
            &Occupancy::default(),
            day("2026-11-25T00:00:00Z", "2026-11-26T00:00:00Z"),
        );
        assert_eq!(
            starts(&slots),
            [
                "2026-11-25T14:00Z",
                "2026-11-25T14:30Z",
                "2026-11-25T15:00Z",
                "2026-11-25T15:30Z"
            ]
        );
        assert!(slots.iter().all(|s| s.end - s.start == Duration::minutes(30)));
    }

    #[test]
    fn spring_forward_gap_new_york() {
        // 2026-03-08 (Sunday): 02:00 EST jumps to 03:00 EDT.
        let s = schedule(chrono_tz::America::New_York, &[(7, "01:00", "04:00")]);
        let slots = free_slots(
            &s,
            &spec(30),
            &Occupancy::default(),
            day("2026-03-08T00:00:00Z", "2026-03-09T00:00:00Z"),
        );
        // 01:00, 01:30 EST then 03:00, 03:30 EDT: two real hours, no 02:xx.
        assert_eq!(
            starts(&slots),
            [
                "2026-03-08T06:00Z",
                "2026-03-08T06:30Z",
                "2026-03-08T07:00Z",
                "2026-03-08T07:30Z"
            ]
        );
        // A rule that lies wholly inside the gap does not exist that day.
        let gap_only = schedule(chrono_tz::America::New_York, &[(7, "02:00", "02:45")]);
        assert!(
            free_slots(
                &gap_only,
                &spec(15),
                &Occupancy::default(),
                day("2026-03-08T00:00:00Z", "2026-03-09T00:00:00Z")
            )
            .is_empty()
        );
        // A rule starting in the gap starts when the clock exists again.
        let from_gap = schedule(chrono_tz::America::New_York, &[(7, "02:30", "04:00")]);
        let slots = free_slots(
            &from_gap,
            &spec(30),
            &Occupancy::default(),
            day("2026-03-08T00:00:00Z", "2026-03-09T00:00:00Z"),
        );
        assert_eq!(starts(&slots), ["2026-03-08T07:00Z", "2026-03-08T07:30Z"]);
    }

    #[test]
    fn fall_back_overlap_new_york() {
        // 2026-11-01 (Sunday): 02:00 EDT falls back to 01:00 EST.
        let s = schedule(chrono_tz::America::New_York, &[(7, "00:00", "03:00")]);
        let slots = free_slots(
            &s,
            &spec(30),
            &Occupancy::default(),
            day("2026-11-01T00:00:00Z", "2026-11-02T00:00:00Z"),
        );
        // Four real hours: 00:00 EDT (04:00Z) to 03:00 EST (08:00Z); 01:00-02:00 happens twice.
        assert_eq!(slots.len(), 8);
        assert_eq!(slots[0].start, utc("2026-11-01T04:00:00Z"));
        assert_eq!(slots[7].end, utc("2026-11-01T08:00:00Z"));
        // A rule starting inside the overlap starts at its first occurrence.
        let s = schedule(chrono_tz::America::New_York, &[(7, "01:30", "02:00")]);
        let slots = free_slots(
            &s,
            &spec(30),
            &Occupancy::default(),
            day("2026-11-01T00:00:00Z", "2026-11-02T00:00:00Z"),
        );
        // 01:30 EDT (05:30Z) until 02:00 EST (07:00Z): 90 real minutes.
        assert_eq!(
            starts(&slots),
            ["2026-11-01T05:30Z", "2026-11-01T06:00Z", "2026-11-01T06:30Z"]
        );
    }

    #[test]
    fn dst_changes_in_london() {
        // 2026-03-29 (Sunday): 01:00 GMT jumps to 02:00 BST.
        let s = schedule(chrono_tz::Europe::London, &[(7, "00:30", "03:00")]);
        let slots = free_slots(
            &s,
            &spec(30),
            &Occupancy::default(),
            day("2026-03-29T00:00:00Z", "2026-03-30T00:00:00Z"),
        );
        assert_eq!(
            starts(&slots),
            ["2026-03-29T00:30Z", "2026-03-29T01:00Z", "2026-03-29T01:30Z"]
        );
        // 2026-10-25 (Sunday): 02:00 BST falls back to 01:00 GMT.
        let s = schedule(chrono_tz::Europe::London, &[(7, "00:00", "03:00")]);
        let slots = free_slots(
            &s,
            &spec(60),
            &Occupancy::default(),
            day("2026-10-24T12:00:00Z", "2026-10-25T12:00:00Z"),
        );
        assert_eq!(
            starts(&slots),
            [
                "2026-10-24T23:00Z",
                "2026-10-25T00:00Z",
                "2026-10-25T01:00Z",
                "2026-10-25T02:00Z"
            ]
        );
    }

    #[test]
    fn rule_crossing_midnight_is_one_window() {
        // Monday 22:00-24:00 and Tuesday 00:00-02:00 in UTC: a 45-minute grid runs through midnight.
        let s = schedule(chrono_tz::UTC, &[(1, "22:00", "24:00"), (2, "00:00", "02:00")]);
        let slots = free_slots(
            &s,
            &spec(45),
            &Occupancy::default(),
            day("2026-11-23T00:00:00Z", "2026-11-25T00:00:00Z"),
        );
        assert_eq!(
            starts(&slots),
            [
                "2026-11-23T22:00Z",
                "2026-11-23T22:45Z",
                "2026-11-23T23:30Z",
                "2026-11-24T00:15Z",
                "2026-11-24T01:00Z"
            ]
        );
        // A local evening rule crosses midnight in UTC: it is found from the UTC day after.
        let la = schedule(chrono_tz::America::Los_Angeles, &[(3, "20:00", "22:00")]);
        let slots = free_slots(
            &la,
            &spec(60),
            &Occupancy::default(),
            day("2026-11-26T00:00:00Z", "2026-11-27T00:00:00Z"),
        );
        assert_eq!(starts(&slots), ["2026-11-26T04:00Z", "2026-11-26T05:00Z"]);
    }

    #[test]
    fn provider_at_two_locations_in_two_zones() {
        // Same wall-clock rule, different instants: each location uses its own zone.
        let london = schedule(chrono_tz::Europe::London, &[(3, "09:00", "10:00")]);
        let new_york = schedule(chrono_tz::America::New_York, &[(3, "09:00", "10:00")]);
        let range = day("2026-11-25T00:00:00Z", "2026-11-26T00:00:00Z");
        assert_eq!(
            starts(&free_slots(&london, &spec(60), &Occupancy::default(), range)),
            ["2026-11-25T09:00Z"]
        );
        assert_eq!(
            starts(&free_slots(&new_york, &spec(60), &Occupancy::default(), range)),
            ["2026-11-25T14:00Z"]
        );
        // A booking at one location blocks the provider everywhere.
        let occupancy = Occupancy {
            busy: vec![Busy {
                interval: day("2026-11-25T09:00:00Z", "2026-11-25T10:00:00Z"),
                buffer_before: Duration::zero(),
                buffer_after: Duration::zero(),
            }],
            ..Occupancy::default()
        };
        assert!(free_slots(&london, &spec(60), &occupancy, range).is_empty());
        assert_eq!(free_slots(&new_york, &spec(60), &occupancy, range).len(), 1);
    }

    #[test]
    fn time_off_holds_closed_dates_and_range_edges() {
        let mut s = schedule(chrono_tz::UTC, &[(3, "09:00", "12:00")]);
        let range = day("2026-11-25T00:00:00Z", "2026-11-26T00:00:00Z");
        let occupancy = Occupancy {
            time_off: vec![day("2026-11-25T09:15:00Z", "2026-11-25T09:45:00Z")],
            holds: vec![day("2026-11-25T11:00:00Z", "2026-11-25T11:30:00Z")],
            busy: vec![],
        };
        let slots = free_slots(&s, &spec(30), &occupancy, range);
        assert_eq!(
            starts(&slots),
            ["2026-11-25T10:00Z", "2026-11-25T10:30Z", "2026-11-25T11:30Z"]
        );
        // Only whole slots inside the range.
        let partial = free_slots(
            &s,
            &spec(30),
            &Occupancy::default(),
            day("2026-11-25T09:10:00Z", "2026-11-25T10:10:00Z"),
        );
        assert_eq!(starts(&partial), ["2026-11-25T09:30Z"]);
        s.closed_dates
            .push(NaiveDate::from_ymd_opt(2026, 11, 25).expect("date"));
        assert!(free_slots(&s, &spec(30), &Occupancy::default(), range).is_empty());
    }

    #[test]
    fn buffers_on_both_sides() {
        let s = schedule(chrono_tz::UTC, &[(3, "09:00", "12:00")]);
        let range = day("2026-11-25T00:00:00Z", "2026-11-26T00:00:00Z");
        let booked = |before: i64, after: i64| Occupancy {
            busy: vec![Busy {
                interval: day("2026-11-25T10:00:00Z", "2026-11-25T10:30:00Z"),
                buffer_before: Duration::minutes(before),
                buffer_after: Duration::minutes(after),
            }],
            ..Occupancy::default()
        };
        // The booked visit keeps 15 minutes after itself: 10:30 is taken, 11:00 free.
        let slots = free_slots(&s, &spec(30), &booked(0, 15), range);
        assert_eq!(
            starts(&slots),
            [
                "2026-11-25T09:00Z",
                "2026-11-25T09:30Z",
                "2026-11-25T11:00Z",
                "2026-11-25T11:30Z"
            ]
        );
        // The new visit keeps 15 minutes after itself: 09:30 would end too close to 10:00.
        let mut padded = spec(30);
        padded.buffer_after = Duration::minutes(15);
        let slots = free_slots(&s, &padded, &booked(0, 0), range);
        assert_eq!(
            starts(&slots),
            [
                "2026-11-25T09:00Z",
                "2026-11-25T10:30Z",
                "2026-11-25T11:00Z",
                "2026-11-25T11:30Z"
            ]
        );
    }

    #[test]
    fn notice_furthest_date_and_grid() {
        let s = schedule(chrono_tz::UTC, &[(3, "09:00", "12:00"), (4, "09:00", "10:00")]);
        let range = day("2026-11-25T00:00:00Z", "2026-11-27T00:00:00Z");
        let mut sp = spec(60);
        sp.step = Duration::minutes(30);
        sp.earliest_start = utc("2026-11-25T10:15:00Z");
        sp.latest_start = Some(utc("2026-11-26T00:00:00Z"));
        let slots = free_slots(&s, &sp, &Occupancy::default(), range);
        assert_eq!(starts(&slots), ["2026-11-25T10:30Z", "2026-11-25T11:00Z"]);
        let w = windows(&s, range);
        assert_eq!(
            grid_position(&w, &sp, utc("2026-11-25T09:30:00Z")),
            GridPosition::OnGrid
        );
        assert_eq!(
            grid_position(&w, &sp, utc("2026-11-25T09:10:00Z")),
            GridPosition::OffGrid
        );
        assert_eq!(
            grid_position(&w, &sp, utc("2026-11-25T11:30:00Z")),
            GridPosition::Outside,
            "would end after 12:00"
        );
        assert_eq!(
            grid_position(&w, &sp, utc("2026-11-25T13:00:00Z")),
            GridPosition::Outside
        );
    }

    #[test]
    fn instants_finer_than_a_microsecond_are_compared_exactly() {
        let s = schedule(chrono_tz::UTC, &[(3, "09:00", "11:00")]);
        let nine = utc("2026-11-25T09:00:00Z");
        let ns = |n: i64| Duration::nanoseconds(n);
        let whole = day("2026-11-25T00:00:00Z", "2026-11-26T00:00:00Z");
        let slots =
            |spec: &SlotSpec, occupancy: &Occupancy, range: Interval| starts(&free_slots(&s, spec, occupancy, range));
        let all = [
            "2026-11-25T09:00Z",
            "2026-11-25T09:30Z",
            "2026-11-25T10:00Z",
            "2026-11-25T10:30Z",
        ];
        assert_eq!(slots(&spec(30), &Occupancy::default(), whole), all);
        // A range starting a nanosecond after a slot start leaves that slot out;
        // one ending a nanosecond before a slot end leaves that one out.
        let range = Interval::new(nine + ns(1), utc("2026-11-25T11:00:00Z") - ns(1));
        assert_eq!(slots(&spec(30), &Occupancy::default(), range), all[1..3]);
        // Notice ending a nanosecond after 09:00 rules 09:00 out.
        let mut late = spec(30);
        late.earliest_start = nine + ns(1);
        assert_eq!(slots(&late, &Occupancy::default(), whole), all[1..]);
        late.earliest_start = nine;
        assert_eq!(slots(&late, &Occupancy::default(), whole), all);
        // A hold ending a nanosecond into 09:30 takes 09:30; one ending at 09:30 does not.
        let half = utc("2026-11-25T09:30:00Z");
        let held = |end| Occupancy {
            holds: vec![Interval::new(nine - Duration::hours(1), end)],
            ..Occupancy::default()
        };
        assert_eq!(slots(&spec(30), &held(half), whole), all[1..]);
        assert_eq!(slots(&spec(30), &held(half + ns(1)), whole), all[2..]);
        // An appointment starting a nanosecond before 10:30 takes 10:00.
        let booked = Occupancy {
            busy: vec![Busy {
                interval: Interval::new(utc("2026-11-25T10:30:00Z") - ns(1), utc("2026-11-25T12:00:00Z")),
                buffer_before: Duration::zero(),
                buffer_after: Duration::zero(),
            }],
            ..Occupancy::default()
        };
        assert_eq!(slots(&spec(30), &booked, whole), all[..2]);
    }

    /// The rule as written before the walk was tuned: every grid point of
    /// every window, judged on chrono instants.
    fn reference(schedule: &Schedule, spec: &SlotSpec, occupancy: &Occupancy, range: Interval) -> Vec<Interval> {
        let mut slots = Vec::new();
        for window in windows(schedule, range) {
            let mut start = window.start;
            while start + spec.duration <= window.end {
                let slot = Interval::new(start, start + spec.duration);
                let clear = slot.start >= spec.earliest_start
                    && spec.latest_start.is_none_or(|latest| slot.start <= latest)
                    && !occupancy
                        .time_off
                        .iter()
                        .chain(&occupancy.holds)
                        .any(|i| i.overlaps(&slot))
                    && !occupancy.busy.iter().any(|b| {
                        b.interval.overlaps(&slot.padded(spec.buffer_before, spec.buffer_after))
                            || b.interval.padded(b.buffer_before, b.buffer_after).overlaps(&slot)
                    });
                if range.start <= slot.start && slot.end <= range.end && clear {
                    slots.push(slot);
                }
                start += spec.step;
            }
        }
        slots
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]

        #[test]
        fn the_walk_finds_exactly_the_slots_of_the_rule(
            rules in proptest::collection::vec((1u32..=4, 0u32..1440, 1u32..=900), 1..5),
            duration in 5i64..120,
            step in 5i64..90,
            buffers in (0i64..45, 0i64..45),
            // Offsets in seconds from 2026-11-23T00:00Z, nanoseconds included.
            range in (0i64..300_000, 3_600i64..200_000, 0u32..1_000_000_000),
            notice in (0i64..40_000, 0u32..1_000_000_000),
            latest in proptest::option::of(100_000i64..600_000),
            taken in proptest::collection::vec((0i64..300_000, 1i64..7_200, 0i64..30, 0i64..30, 0u32..1_000_000_000), 0..8),
            zone in proptest::sample::select(vec![chrono_tz::UTC, chrono_tz::America::New_York, chrono_tz::Europe::London, chrono_tz::Australia::Lord_Howe]),
        ) {
            let base = utc("2026-11-23T00:00:00Z");
            let at = |seconds: i64, nanos: u32| base + Duration::seconds(seconds) + Duration::nanoseconds(nanos.into());
            let schedule = Schedule {
                zone,
                rules: rules
                    .iter()
                    .map(|(weekday, start, length)| WeeklyRule {
                        weekday: *weekday,
                        start_minute: *start,
                        end_minute: (start + length).min(1440),
                    })
                    .collect(),
                closed_dates: vec![NaiveDate::from_ymd_opt(2026, 11, 25).expect("date")],
            };
            let spec = SlotSpec {
                duration: Duration::minutes(duration),
                step: Duration::minutes(step),
                buffer_before: Duration::minutes(buffers.0),
                buffer_after: Duration::minutes(buffers.1),
                earliest_start: at(notice.0, notice.1),
                latest_start: latest.map(|l| at(l, 0)),
            };
            let mut occupancy = Occupancy::default();
            for (i, (start, length, before, after, nanos)) in taken.iter().enumerate() {
                let interval = Interval::new(at(*start, *nanos), at(start + length, *nanos));
                match i % 3 {
                    0 => occupancy.busy.push(Busy {
                        interval,
                        buffer_before: Duration::minutes(*before),
                        buffer_after: Duration::minutes(*after),
                    }),
                    1 => occupancy.holds.push(interval),
                    _ => occupancy.time_off.push(interval),
                }
            }
            let range = Interval::new(at(range.0, range.2), at(range.0 + range.1, range.2));
            proptest::prop_assert_eq!(
                free_slots(&schedule, &spec, &occupancy, range),
                reference(&schedule, &spec, &occupancy, range)
            );
        }
    }
}
