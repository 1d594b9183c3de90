//! When reminders go out and when SMS must wait: reminder offsets and quiet
//! hours, as settings, location and appointment-type values. Pure.

use chrono::{DateTime, Duration, NaiveTime, TimeZone, Timelike, Utc};
use std::fmt;
use std::str::FromStr;

/// The longest reminder offset: 30 days before the start.
pub const MAX_OFFSET_MINUTES: u32 = 60 * 24 * 30;
/// At most this many reminders per appointment.
pub const MAX_OFFSETS: usize = 5;

/// Minutes before an appointment's start at which reminders go out, largest first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReminderOffsets(Vec<u32>);

impl Default for ReminderOffsets {
    /// A day and two hours before.
    fn default() -> Self {
        Self(vec![24 * 60, 2 * 60])
    }
}

impl ReminderOffsets {
    /// Offsets from a list of minutes (each 1 to 43200, distinct, at most 5; none
    /// means no reminders).
    pub fn new(mut minutes: Vec<u32>) -> Result<Self, String> {
        if minutes.len() > MAX_OFFSETS {
            return Err(format!("at most {MAX_OFFSETS} reminders"));
        }
        if let Some(bad) = minutes.iter().find(|m| !(1..=MAX_OFFSET_MINUTES).contains(*m)) {
            return Err(format!("{bad} is not between 1 and {MAX_OFFSET_MINUTES} minutes"));
        }
        minutes.sort_unstable_by(|a, b| b.cmp(a));
        if minutes.windows(2).any(|w| w[0] == w[1]) {
            return Err("an offset appears twice".into());
        }
        Ok(Self(minutes))
    }

    /// The offsets in minutes, largest first.
    pub fn minutes(&self) -> &[u32] {
        &self.0
    }
}

/// Validates client-given offsets (`field` names the argument) and answers
/// their stored form.
pub fn offsets_input(field: &str, minutes: &[i32]) -> crate::ServiceResult<String> {
    let minutes = minutes
        .iter()
        .map(|m| u32::try_from(*m).map_err(|_| format!("{m} is not a number of minutes before the start")))
        .collect::<Result<Vec<_>, _>>()
        .and_then(ReminderOffsets::new)
        .map_err(|e| crate::ServiceError::bad_input(field, e))?;
    Ok(minutes.to_string())
}

/// Validates client-given quiet hours (`HH:MM-HH:MM` or `off`) and answers
/// their stored form.
pub fn quiet_hours_input(field: &str, text: &str) -> crate::ServiceResult<String> {
    match QuietHours::parse_setting(text) {
        Ok(Some(quiet)) => Ok(quiet.to_string()),
        Ok(None) => Ok("off".into()),
        Err(e) => Err(crate::ServiceError::bad_input(field, e)),
    }
}

impl FromStr for ReminderOffsets {
    type Err = String;

    /// `1440,120`; `none` (or nothing) for no reminders.
    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.is_empty() || text.eq_ignore_ascii_case("none") {
            return Ok(Self(Vec::new()));
        }
        let minutes = text
            .split(',')
            .map(|part| {
                part.trim()
                    .parse::<u32>()
                    .map_err(|_| format!("{:?} is not a number of minutes", part.trim()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(minutes)
    }
}

impl fmt::Display for ReminderOffsets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("none");
        }
        let parts: Vec<String> = self.0.iter().map(u32::to_string).collect();
        f.write_str(&parts.join(","))
    }
}

/// A daily window of local wall-clock time in which no SMS is sent; it may wrap
/// past midnight (`21:00-08:00`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuietHours {
    start: NaiveTime,
    end: NaiveTime,
}

impl Default for QuietHours {
    /// 21:00 to 08:00.
    fn default() -> Self {
        Self {
            start: NaiveTime::from_hms_opt(21, 0, 0).unwrap_or(NaiveTime::MIN),
            end: NaiveTime::from_hms_opt(8, 0, 0).unwrap_or(NaiveTime::MIN),
        }
    }
}

impl QuietHours {
    /// Parses a setting: `HH:MM-HH:MM`, or `off` for none.
    pub fn parse_setting(text: &str) -> Result<Option<Self>, String> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("off") || text.eq_ignore_ascii_case("none") {
            return Ok(None);
        }
        text.parse().map(Some)
    }

    /// True when `local` (a wall-clock time) falls inside the window.
    pub fn contains(&self, local: NaiveTime) -> bool {
        if self.start < self.end {
            self.start <= local && local < self.end
        } else {
            local >= self.start || local < self.end
        }
    }

    /// When an SMS due at `now` may go out in `zone`: `None` when it may go now,
    /// otherwise the end of the window (the first valid local instant at or
    /// after it, should a DST change skip the wall-clock time).
    pub fn wait_until<Tz: TimeZone>(&self, now: DateTime<Utc>, zone: &Tz) -> Option<DateTime<Utc>> {
        let local = now.with_timezone(zone).naive_local();
        let time = local.time().with_nanosecond(0).unwrap_or(local.time());
        if !self.contains(time) {
            return None;
        }
        let mut date = local.date();
        if time >= self.end {
            date = date.succ_opt()?;
        }
        let mut end = date.and_time(self.end);
        // A wall-clock time inside a DST gap does not exist: step until it does.
        for _ in 0..4 {
            if let Some(instant) = zone.from_local_datetime(&end).earliest() {
                return Some(instant.with_timezone(&Utc));
            }
            end += Duration::minutes(30);
        }
        None
    }
}

impl FromStr for QuietHours {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (start, end) = text
            .trim()
            .split_once('-')
            .ok_or_else(|| "expected HH:MM-HH:MM or off".to_owned())?;
        let parse = |t: &str| {
            NaiveTime::parse_from_str(t.trim(), "%H:%M").map_err(|_| format!("{:?} is not a time HH:MM", t.trim()))
        };
        let (start, end) = (parse(start)?, parse(end)?);
        if start == end {
            return Err("start and end must differ".into());
        }
        Ok(Self { start, end })
    }
}

impl fmt::Display for QuietHours {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.start.format("%H:%M"), self.end.format("%H:%M"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::America::New_York;

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).expect("rfc3339").to_utc()
    }

    #[test]
    fn offsets_parse_sort_and_refuse_nonsense() {
        let offsets: ReminderOffsets = "120, 1440".parse().expect("parses");
        assert_eq!(offsets.minutes(), &[1440, 120]);
        assert_eq!(offsets.to_string(), "1440,120");
        assert!("none".parse::<ReminderOffsets>().expect("none").minutes().is_empty());
        for bad in ["0", "-5", "abc", "60,60", "50000", "1,2,3,4,5,6"] {
            assert!(bad.parse::<ReminderOffsets>().is_err(), "{bad}");
        }
    }

    #[test]
    fn quiet_hours_wrap_midnight_in_the_local_zone() {
        let quiet = QuietHours::default();
        // 22:30 in New York (EST, UTC-5) waits for 08:00 the next morning.
        assert_eq!(
            quiet.wait_until(utc("2026-11-26T03:30:00Z"), &New_York),
            Some(utc("2026-11-26T13:00:00Z"))
        );
        // 06:00 waits for 08:00 the same morning.
        assert_eq!(
            quiet.wait_until(utc("2026-11-26T11:00:00Z"), &New_York),
            Some(utc("2026-11-26T13:00:00Z"))
        );
        // 10:00 may send.
        assert_eq!(quiet.wait_until(utc("2026-11-26T15:00:00Z"), &New_York), None);
        // A daytime window does not wrap.
        let lunch: QuietHours = "12:00-13:00".parse().expect("parses");
        assert!(lunch.contains(NaiveTime::from_hms_opt(12, 30, 0).expect("time")));
        assert!(!lunch.contains(NaiveTime::from_hms_opt(13, 0, 0).expect("time")));
    }

    #[test]
    fn quiet_hours_end_inside_a_dst_gap_moves_past_it() {
        // 2026-03-08 02:00 -> 03:00 in New York: 02:30 does not exist that night.
        let quiet: QuietHours = "23:00-02:30".parse().expect("parses");
        let at = quiet.wait_until(utc("2026-03-08T05:00:00Z"), &New_York).expect("waits");
        assert_eq!(at, utc("2026-03-08T07:00:00Z"), "03:00 EDT");
        assert_eq!(QuietHours::parse_setting("off").expect("off"), None);
        assert!(QuietHours::parse_setting("9-5").is_err());
    }
}
