//! A minimal RFC 5545 calendar with one event, for confirmation and reschedule
//! emails: CRLF line ends, lines folded at 75 octets, text escaped. The UID is
//! the appointment's, and SEQUENCE its version, so a calendar that imported the
//! confirmation updates the same entry when a reschedule notice arrives.

use chrono::{DateTime, Utc};

/// What the calendar entry says. No PHI and no appointment type: the entry may
/// sync to devices and services the clinic does not control.
#[derive(Clone, Debug)]
pub struct CalendarEvent<'a> {
    /// Stable id of the appointment.
    pub uid: String,
    /// Increases with every change of the appointment.
    pub sequence: i32,
    /// When this calendar was made.
    pub stamp: DateTime<Utc>,
    /// Start.
    pub start: DateTime<Utc>,
    /// End.
    pub end: DateTime<Utc>,
    /// Clinic name (summary and location).
    pub clinic: &'a str,
}

/// The `.ics` text of `event`.
pub fn calendar(event: &CalendarEvent<'_>) -> String {
    let lines = [
        "BEGIN:VCALENDAR".to_owned(),
        "VERSION:2.0".to_owned(),
        "PRODID:-//Careslot//Careslot reminders//EN".to_owned(),
        "CALSCALE:GREGORIAN".to_owned(),
        "METHOD:PUBLISH".to_owned(),
        "BEGIN:VEVENT".to_owned(),
        format!("UID:{}", escape(&event.uid)),
        format!("SEQUENCE:{}", event.sequence.max(0)),
        format!("DTSTAMP:{}", stamp(event.stamp)),
        format!("DTSTART:{}", stamp(event.start)),
        format!("DTEND:{}", stamp(event.end)),
        format!("SUMMARY:{}", escape(&format!("Appointment at {}", event.clinic))),
        format!("LOCATION:{}", escape(event.clinic)),
        "STATUS:CONFIRMED".to_owned(),
        "TRANSP:OPAQUE".to_owned(),
        "END:VEVENT".to_owned(),
        "END:VCALENDAR".to_owned(),
    ];
    let mut out = String::new();
    for line in lines {
        fold_into(&mut out, &line);
    }
    out
}

/// A UTC date-time in iCalendar's basic form.
fn stamp(at: DateTime<Utc>) -> String {
    at.format("%Y%m%dT%H%M%SZ").to_string()
}

/// Escapes a TEXT value (RFC 5545 3.3.11).
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            ';' => out.push_str("\\;"),
            ',' => out.push_str("\\,"),
            '\n' => out.push_str("\\n"),
            '\r' => {}
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// Appends `line` folded at 75 octets (never inside a UTF-8 character), CRLF-ended.
fn fold_into(out: &mut String, line: &str) {
    let mut width = 0;
    for c in line.chars() {
        let len = c.len_utf8();
        if width + len > 75 {
            out.push_str("\r\n ");
            width = 1;
        }
        out.push(c);
        width += len;
    }
    out.push_str("\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_escapes_and_ends_lines_with_crlf() {
        let start = DateTime::parse_from_rfc3339("2026-11-26T15:00:00Z")
            .expect("time")
            .to_utc();
        let clinic = "Ünïcode; Clinic, with a very long name that goes on and on and on past the fold";
        let text = calendar(&CalendarEvent {
            uid: "abc@careslot".into(),
            sequence: 2,
            stamp: start,
            start,
            end: start + chrono::Duration::minutes(30),
            clinic,
        });
        assert!(text.starts_with("BEGIN:VCALENDAR\r\n"));
        assert!(text.ends_with("END:VCALENDAR\r\n"));
        assert!(text.contains("DTSTART:20261126T150000Z\r\n"));
        assert!(text.contains("SEQUENCE:2\r\n"));
        for line in text.split("\r\n") {
            assert!(line.len() <= 75, "{line:?} is longer than 75 octets");
            assert!(!line.contains('\n'));
        }
        let unfolded = text.replace("\r\n ", "");
        assert!(unfolded.contains("LOCATION:Ünïcode\\; Clinic\\, with a very long name"));
    }
}
