//! What a notice says. Minimum necessary: the clinic, the date and the time in
//! the location's zone; never the appointment type, the provider, notes or the
//! patient's name, since an SMS or a subject line shows on a lock screen.

use super::ics::{CalendarEvent, calendar};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;

/// Which notice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoticeKind {
    /// Sent at booking.
    Confirmation,
    /// Sent at each reminder offset before the start.
    Reminder,
    /// Sent when the appointment moves.
    Rescheduled,
    /// Sent when the appointment is cancelled.
    Cancelled,
}

/// The facts a notice is made of.
#[derive(Clone, Debug)]
pub struct NoticeFacts<'a> {
    /// Which notice.
    pub kind: NoticeKind,
    /// Appointment id (the calendar UID).
    pub appointment_id: uuid::Uuid,
    /// Appointment version (the calendar SEQUENCE).
    pub version: i32,
    /// Clinic (location) name.
    pub clinic: &'a str,
    /// The location's zone: times are shown in it.
    pub zone: Tz,
    /// Start.
    pub start: DateTime<Utc>,
    /// End.
    pub end: DateTime<Utc>,
    /// Now, for the calendar stamp.
    pub now: DateTime<Utc>,
}

/// A rendered notice, for every channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RenderedNotice {
    /// Email subject.
    pub subject: String,
    /// Email plain-text body.
    pub text: String,
    /// Email HTML body.
    pub html: String,
    /// SMS body.
    pub sms: String,
    /// iCalendar attachment (confirmations and reschedules).
    pub ics: Option<String>,
}

/// Renders the notice `facts` describe.
pub fn render(facts: &NoticeFacts<'_>) -> RenderedNotice {
    let local = facts.start.with_timezone(&facts.zone);
    let date = local.format("%a %b %-d, %Y").to_string();
    let time = local.format("%-I:%M %p %Z").to_string();
    let clinic = facts.clinic;
    let (subject, sentence, sms) = match facts.kind {
        NoticeKind::Confirmation => (
            format!("Appointment confirmed: {clinic}, {date} at {time}"),
            format!("Your appointment at {clinic} is confirmed for {date} at {time}."),
            format!("{clinic}: your appointment is confirmed for {date} at {time}."),
        ),
        NoticeKind::Reminder => (
            format!("Reminder: {clinic}, {date} at {time}"),
            format!("This is a reminder of your appointment at {clinic} on {date} at {time}."),
            format!("{clinic}: reminder of your appointment on {date} at {time}."),
        ),
        NoticeKind::Rescheduled => (
            format!("Appointment moved: {clinic}, now {date} at {time}"),
            format!("Your appointment at {clinic} has moved to {date} at {time}."),
            format!("{clinic}: your appointment has moved to {date} at {time}."),
        ),
        NoticeKind::Cancelled => (
            format!("Appointment cancelled: {clinic}, {date} at {time}"),
            format!("Your appointment at {clinic} on {date} at {time} has been cancelled."),
            format!("{clinic}: your appointment on {date} at {time} has been cancelled."),
        ),
    };
    let closing = format!("To change or cancel, please contact {clinic}.");
    let text = format!("Hello,\n\n{sentence}\n\n{closing}\n");
    let html = format!(
        "<!DOCTYPE html><html><body><p>Hello,</p><p>{}</p><p>{}</p></body></html>",
        html_escape(&sentence),
        html_escape(&closing)
    );
    let ics = matches!(facts.kind, NoticeKind::Confirmation | NoticeKind::Rescheduled).then(|| {
        calendar(&CalendarEvent {
            uid: format!("{}@careslot", facts.appointment_id),
            sequence: facts.version,
            stamp: facts.now,
            start: facts.start,
            end: facts.end,
            clinic,
        })
    });
    RenderedNotice {
        subject,
        text,
        html,
        sms,
        ics,
    }
}

fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(kind: NoticeKind) -> NoticeFacts<'static> {
        let start = DateTime::parse_from_rfc3339("2026-11-26T15:00:00Z")
            .expect("time")
            .to_utc();
        NoticeFacts {
            kind,
            appointment_id: uuid::Uuid::nil(),
            version: 1,
            clinic: "Main <Street>",
            zone: chrono_tz::America::New_York,
            start,
            end: start + chrono::Duration::minutes(30),
            now: start,
        }
    }

    #[test]
    fn shows_local_time_and_only_the_minimum() {
        let notice = render(&facts(NoticeKind::Reminder));
        assert_eq!(
            notice.subject,
            "Reminder: Main <Street>, Thu Nov 26, 2026 at 10:00 AM EST"
        );
        assert!(notice.sms.contains("Thu Nov 26, 2026 at 10:00 AM EST"));
        assert!(notice.html.contains("Main &lt;Street&gt;"));
        assert!(notice.ics.is_none(), "reminders carry no calendar");
        assert!(render(&facts(NoticeKind::Confirmation)).ics.is_some());
        assert!(render(&facts(NoticeKind::Rescheduled)).ics.is_some());
        assert!(
            render(&facts(NoticeKind::Cancelled))
                .subject
                .starts_with("Appointment cancelled")
        );
    }
}
