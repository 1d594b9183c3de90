//! The reminder worker against real peers: an SMTP server (aiosmtpd) and Prism
//! serving Twilio's own OpenAPI description, both started by the tests on
//! loopback. Time moves with the manual clock, never with sleeps.

use careslot_tests::clinic::Clinic;
use careslot_tests::peers::{SilentServer, SmtpServer, prism_twilio, refusing_smtp};
use careslot_tests::{Backend, TestApp, on_both_databases};
use chrono::{DateTime, Duration, Utc};
use domain::clock::Clock;
use domain::jobs::{DeliveryStatus, Job, JobKind, JobStatus};
use serde_json::json;
use std::sync::Arc;
use uuid::Uuid;
use workers::{
    EmailSender, OutboxSender, OutgoingEmail, SendError, Senders, SmsSender, SmtpSender, TwilioConfig, TwilioSender,
    Worker, WorkerConfig,
};

const THU_10: &str = "2026-11-26T15:00:00Z"; // 10:00 in New York
const TWILIO_SID: &str = "AC00000000000000000000000000000000";

fn config(id: &str) -> WorkerConfig {
    WorkerConfig {
        worker_id: id.into(),
        concurrency: 8,
        batches: 1,
        lease: std::time::Duration::from_secs(300),
        send_timeout: std::time::Duration::from_secs(60),
        poll: std::time::Duration::from_secs(1),
    }
}

fn smtp(url: &str) -> Arc<dyn EmailSender> {
    Arc::new(
        SmtpSender::new(
            url,
            "Careslot <no-reply@clinic.test>",
            std::time::Duration::from_secs(20),
        )
        .expect("smtp"),
    )
}

fn twilio(base_url: &str, sid: &str) -> Arc<dyn SmsSender> {
    workers::install_crypto_provider();
    Arc::new(
        TwilioSender::new(TwilioConfig {
            base_url: base_url.into(),
            account_sid: sid.into(),
            auth_token: "test-token".into(),
            from: "+15550001111".into(),
            timeout: std::time::Duration::from_secs(20),
        })
        .expect("twilio client"),
    )
}

fn worker(app: &TestApp, email: Arc<dyn EmailSender>, sms: Option<Arc<dyn SmsSender>>) -> Worker {
    Worker::new(app.app.services.clone(), Senders { email, sms }, config("test-worker"))
}

fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).expect("rfc3339").to_utc()
}

/// A patient with email and phone, as staff creates them.
async fn patient_with_phone(app: &TestApp, clinic: &Clinic) -> String {
    app.create_patient(
        &clinic.staff,
        json!({ "name": "Sam Phone", "birthDate": "1975-05-05", "email": "sam@example.org", "phone": "+15551234567" }),
    )
    .await
}

async fn book(app: &TestApp, clinic: &Clinic, patient: &str, start: &str) -> Uuid {
    let booked = clinic.book(app, &clinic.staff, patient, start, json!({})).await;
    booked.data()["bookAppointment"]["id"]
        .as_str()
        .expect("id")
        .parse()
        .expect("uuid")
}

async fn jobs(app: &TestApp, appointment: Uuid) -> Vec<Job> {
    app.app
        .services
        .jobs_of_appointment_unchecked(appointment)
        .await
        .expect("jobs")
}

fn of_kind(jobs: &[Job], kind: JobKind) -> Vec<&Job> {
    jobs.iter().filter(|j| j.kind == kind).collect()
}

fn unfold(message: &str) -> String {
    message.replace("\r\n ", " ").replace("\r\n\t", " ")
}

/// A structural check of an RFC 5545 calendar: CRLF lines of at most 75
/// octets, balanced components, the properties a VEVENT must have.
fn assert_valid_ics(ics: &str, start: &str) {
    assert!(ics.ends_with("\r\n"), "lines end with CRLF");
    for line in ics.split("\r\n") {
        assert!(line.len() <= 75, "line longer than 75 octets: {line:?}");
        assert!(
            !line.contains('\n') && !line.contains('\r'),
            "bare line break in {line:?}"
        );
    }
    let lines: Vec<String> = ics.replace("\r\n ", "").split("\r\n").map(str::to_owned).collect();
    let mut stack = Vec::new();
    for line in &lines {
        if let Some(name) = line.strip_prefix("BEGIN:") {
            stack.push(name.to_owned());
        } else if let Some(name) = line.strip_prefix("END:") {
            assert_eq!(stack.pop().as_deref(), Some(name), "unbalanced END:{name}");
        }
    }
    assert!(stack.is_empty(), "unclosed components: {stack:?}");
    assert_eq!(lines.first().map(String::as_str), Some("BEGIN:VCALENDAR"));
    for property in [
        "VERSION:2.0",
        "PRODID:",
        "BEGIN:VEVENT",
        "UID:",
        "DTSTAMP:",
        "SEQUENCE:",
    ] {
        assert!(lines.iter().any(|l| l.starts_with(property)), "missing {property}");
    }
    let dtstart = utc(start).format("DTSTART:%Y%m%dT%H%M%SZ").to_string();
    assert!(lines.contains(&dtstart), "expected {dtstart} in {ics}");
}

async fn confirmation_email_with_ics_then_sms_after_quiet_hours(app: &TestApp) {
    let clinic = Clinic::open(app).await;
    let patient = patient_with_phone(app, &clinic).await;
    let smtp_server = SmtpServer::start();
    let prism = prism_twilio();
    let id = book(app, &clinic, &patient, THU_10).await;

    let planned = jobs(app, id).await;
    assert_eq!(of_kind(&planned, JobKind::Confirmation).len(), 1);
    let reminders = of_kind(&planned, JobKind::Reminder);
    let due: Vec<DateTime<Utc>> = reminders.iter().map(|j| j.run_at).collect();
    assert_eq!(
        due,
        vec![utc("2026-11-25T15:00:00Z"), utc("2026-11-26T13:00:00Z")],
        "24 h and 2 h before"
    );
    assert!(planned.iter().all(|j| j.payload.appointment_id == id));

    let w = worker(
        app,
        smtp(&smtp_server.peer.smtp_url()),
        Some(twilio(&prism.http_url(), TWILIO_SID)),
    );
    assert_eq!(w.drain().await.expect("drain"), 1, "only the confirmation is due");
    let messages = smtp_server.messages();
    assert_eq!(messages.len(), 1);
    let mail = unfold(&messages[0]);
    assert!(
        mail.contains("Subject: Appointment confirmed: Main Street, Thu Nov 26, 2026 at 10:00 AM EST"),
        "{mail}"
    );
    assert!(
        !mail.contains("Checkup"),
        "the appointment type stays out of the message"
    );
    assert!(!mail.contains("Sam Phone"), "no patient name in the message");
    assert!(mail.contains("text/html") && mail.contains("text/plain"));
    let calendars = smtp_server.calendars(1);
    assert_eq!(calendars.len(), 1, "one .ics attached");
    assert_valid_ics(&calendars[0], THU_10);
    assert!(calendars[0].contains(&format!("UID:{id}@careslot")));

    // 07:00 in New York is inside the quiet hours: the SMS waits for 08:00.
    let confirmation = app
        .app
        .services
        .job_unchecked(planned[0].id)
        .await
        .expect("job")
        .expect("exists");
    assert_eq!(confirmation.kind, JobKind::Confirmation);
    assert_eq!(confirmation.status, JobStatus::Pending);
    assert_eq!(confirmation.run_at, utc("2026-11-25T13:00:00Z"));
    assert_eq!(
        confirmation.attempts, 0,
        "waiting for quiet hours is not a failed attempt"
    );

    app.clock.set(utc("2026-11-25T13:00:00Z"));
    assert_eq!(w.drain().await.expect("drain"), 1);
    let confirmation = app
        .app
        .services
        .job_unchecked(confirmation.id)
        .await
        .expect("job")
        .expect("exists");
    assert_eq!(confirmation.status, JobStatus::Done);
    let deliveries = app.app.services.deliveries(confirmation.id).await.expect("deliveries");
    let sms = deliveries.iter().find(|d| d.channel == "sms").expect("sms record");
    assert_eq!(sms.status, DeliveryStatus::Sent);
    assert!(
        sms.provider_ref.as_deref().is_some_and(|r| r.starts_with("SM")),
        "Twilio's SID: {sms:?}"
    );
    assert_eq!(smtp_server.messages().len(), 1, "the email went once");

    // The day-before reminder at 10:00 New York time.
    app.clock.set(utc("2026-11-25T15:00:00Z"));
    assert_eq!(w.drain().await.expect("drain"), 1);
    let messages = smtp_server.messages();
    assert_eq!(messages.len(), 2);
    assert!(unfold(&messages[1]).contains("Subject: Reminder: Main Street, Thu Nov 26, 2026 at 10:00 AM EST"));
    assert!(smtp_server.calendars(2).is_empty(), "reminders carry no calendar");
}

async fn twilio_4xx_is_dead_lettered_at_once_and_can_be_retried(app: &TestApp) {
    let clinic = Clinic::open(app).await;
    let patient = patient_with_phone(app, &clinic).await;
    let prism = prism_twilio();
    let outbox = std::env::temp_dir().join(format!("careslot-outbox-{}", Uuid::new_v4().simple()));
    let email: Arc<dyn EmailSender> =
        Arc::new(OutboxSender::new(outbox.clone(), "Careslot <no-reply@clinic.test>").expect("outbox"));
    let id = book(app, &clinic, &patient, THU_10).await;
    app.clock.set(utc("2026-11-25T14:00:00Z")); // 09:00 in New York: SMS may go.

    // Prism validates the request against Twilio's description: this SID is refused (HTTP 422).
    let refused = worker(app, email.clone(), Some(twilio(&prism.http_url(), "ACnotvalid")));
    assert_eq!(refused.drain().await.expect("drain"), 1);
    let confirmation = of_kind(&jobs(app, id).await, JobKind::Confirmation)[0].clone();
    assert_eq!(confirmation.status, JobStatus::Dead, "a 4xx is not retried");
    assert_eq!(confirmation.attempts, 1);
    let error = confirmation.last_error.clone().expect("error recorded");
    assert!(error.contains("Twilio HTTP 422"), "{error}");
    assert!(!error.contains("+15551234567"));
    let outbox_files = || std::fs::read_dir(&outbox).map(|d| d.count()).unwrap_or(0);
    assert_eq!(outbox_files(), 1, "the email went out before the SMS failed");

    // The clock moved past the first tokens' lifetime: sign in again.
    let admin = app.admin().await;
    let staff = app.login("desk@clinic.test", "staff password 1234").await;
    let query = "{ deadLetters { edges { node { id kind status attempts lastError appointmentId deliveries { channel status error providerRef } } } } }";
    let listed = app.gql(Some(&admin), query, json!({})).await;
    let node = &listed.data()["deadLetters"]["edges"][0]["node"];
    assert_eq!(node["id"], json!(confirmation.id.to_string()));
    assert_eq!(node["kind"], "CONFIRMATION");
    assert_eq!(node["appointmentId"], json!(id.to_string()));
    let channels = node["deliveries"].as_array().expect("deliveries");
    assert!(
        channels
            .iter()
            .any(|d| d["channel"] == "email" && d["status"] == "SENT")
    );
    assert!(channels.iter().any(|d| d["channel"] == "sms"
        && d["status"] == "FAILED"
        && d["error"].as_str().is_some_and(|e| e.contains("422"))));
    assert_eq!(app.gql(Some(&staff), query, json!({})).await.code(), "FORBIDDEN");

    let retry = "mutation($id: UUID!) { retryJob(id: $id) { status attempts } }";
    let staff_retry = app.gql(Some(&staff), retry, json!({ "id": confirmation.id })).await;
    assert_eq!(staff_retry.code(), "FORBIDDEN");
    let retried = app.gql(Some(&admin), retry, json!({ "id": confirmation.id })).await;
    assert_eq!(
        retried.data()["retryJob"],
        json!({ "status": "PENDING", "attempts": 0 })
    );
    let again = app.gql(Some(&admin), retry, json!({ "id": confirmation.id })).await;
    assert_eq!(again.code(), "INVALID_TRANSITION", "only dead letters can be retried");

    // With the account fixed, the retry sends the SMS only: the email is not sent twice.
    let fixed = worker(app, email, Some(twilio(&prism.http_url(), TWILIO_SID)));
    assert_eq!(fixed.drain().await.expect("drain"), 1);
    let done = app
        .app
        .services
        .job_unchecked(confirmation.id)
        .await
        .expect("job")
        .expect("exists");
    assert_eq!(done.status, JobStatus::Done);
    assert_eq!(outbox_files(), 1, "the email was not sent again");
    let empty = app.gql(Some(&admin), query, json!({})).await;
    assert_eq!(empty.data()["deadLetters"]["edges"], json!([]));
    let _ = std::fs::remove_dir_all(outbox);
}

async fn failing_smtp_retries_with_backoff_then_dead_letters(app: &TestApp) {
    let clinic = Clinic::open(app).await;
    let failing = refusing_smtp(451);
    let id = book(app, &clinic, &clinic.patient, THU_10).await;
    let confirmation_id = of_kind(&jobs(app, id).await, JobKind::Confirmation)[0].id;
    let w = worker(app, smtp(&failing.smtp_url()), None);
    let mut delays = Vec::new();
    for attempt in 1..=8 {
        assert_eq!(w.drain().await.expect("drain"), 1, "attempt {attempt} runs");
        let job = app
            .app
            .services
            .job_unchecked(confirmation_id)
            .await
            .expect("job")
            .expect("exists");
        assert_eq!(job.attempts, attempt);
        let error = job.last_error.clone().expect("error");
        assert!(error.contains("451"), "{error}");
        assert!(!error.contains("pat@example.org"), "addresses are masked: {error}");
        if attempt < 8 {
            assert_eq!(job.status, JobStatus::Pending, "retried");
            let delay = job.run_at - app.clock.now();
            delays.push(delay);
            assert_eq!(w.drain().await.expect("drain"), 0, "not before the backoff");
            app.clock.set(job.run_at);
        } else {
            assert_eq!(job.status, JobStatus::Dead, "dead after the last attempt");
        }
    }
    // Base 30 s doubling, with equal jitter: attempt n waits [15, 30] * 2^(n-1) s.
    for (n, delay) in delays.iter().enumerate() {
        let full = Duration::seconds(30 * (1 << n));
        assert!(*delay >= full / 2 && *delay <= full, "retry {n}: {delays:?}");
    }
    let admin = app.admin().await;
    let listed = app
        .gql(
            Some(&admin),
            "{ deadLetters { edges { node { id lastError } } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        listed.data()["deadLetters"]["edges"][0]["node"]["id"],
        json!(confirmation_id.to_string())
    );

    // Retried against a working server, it is delivered once.
    let server = SmtpServer::start();
    app.gql(
        Some(&admin),
        "mutation($id: UUID!) { retryJob(id: $id) { id } }",
        json!({ "id": confirmation_id }),
    )
    .await
    .data();
    let fixed = worker(app, smtp(&server.peer.smtp_url()), None);
    assert_eq!(fixed.drain().await.expect("drain"), 1);
    assert_eq!(server.messages().len(), 1);
}

async fn worker_killed_mid_send_leads_to_one_delivery(app: &TestApp) {
    let clinic = Clinic::open(app).await;
    let id = book(app, &clinic, &clinic.patient, THU_10).await;
    let confirmation_id = of_kind(&jobs(app, id).await, JobKind::Confirmation)[0].id;
    // Worker A's SMTP server accepts the connection and never answers: A hangs
    // mid-send, holding the lease, and is then killed.
    let silent = SilentServer::start();
    let a = worker(app, smtp(&format!("smtp://127.0.0.1:{}", silent.port)), None);
    let crashed = tokio::spawn(async move { a.run_once().await });
    let services = app.app.services.clone();
    assert!(silent.wait_for_connections(1).await, "worker A reached the send");
    crashed.abort();
    let _ = crashed.await;

    let server = SmtpServer::start();
    let b = worker(app, smtp(&server.peer.smtp_url()), None);
    assert_eq!(b.run_once().await.expect("claim"), 0, "A's lease still holds");
    app.clock.advance(Duration::seconds(301));
    assert_eq!(
        b.drain().await.expect("drain"),
        1,
        "the lapsed lease lets B take the job"
    );
    assert_eq!(server.messages().len(), 1, "one delivery: not zero, not two");
    let job = services
        .job_unchecked(confirmation_id)
        .await
        .expect("job")
        .expect("exists");
    assert_eq!((job.status, job.attempts), (JobStatus::Done, 2));
}

async fn cancellation_before_the_reminder_means_no_reminder(app: &TestApp) {
    let clinic = Clinic::open(app).await;
    let server = SmtpServer::start();
    let w = worker(app, smtp(&server.peer.smtp_url()), None);
    // Today 16:00 in New York: the day-before reminder has already passed.
    let today = book(app, &clinic, &clinic.patient, "2026-11-25T21:00:00Z").await;
    let planned = jobs(app, today).await;
    let reminders = of_kind(&planned, JobKind::Reminder);
    assert_eq!(reminders.len(), 1, "a reminder whose time has passed is not planned");
    assert_eq!(reminders[0].run_at, utc("2026-11-25T19:00:00Z"));

    let id = book(app, &clinic, &clinic.patient, THU_10).await;
    assert_eq!(w.drain().await.expect("drain"), 2, "two confirmations");
    clinic
        .change(app, &clinic.staff, "cancelAppointment", &id.to_string())
        .await
        .data();
    let after = jobs(app, id).await;
    assert!(
        of_kind(&after, JobKind::Reminder)
            .iter()
            .all(|j| j.status == JobStatus::Cancelled)
    );
    assert_eq!(of_kind(&after, JobKind::Cancelled).len(), 1);

    // Today's reminder is due at 14:00 New York time; then Thursday morning comes.
    app.clock.set(utc("2026-11-25T19:00:00Z"));
    w.drain().await.expect("drain");
    app.clock.set(utc("2026-11-26T14:00:00Z"));
    w.drain().await.expect("drain");
    let subjects: Vec<String> = server
        .messages()
        .iter()
        .map(|m| unfold(m))
        .filter_map(|m| m.lines().find(|l| l.starts_with("Subject: ")).map(str::to_owned))
        .collect();
    let about_thursday: Vec<&String> = subjects.iter().filter(|s| s.contains("Nov 26")).collect();
    assert_eq!(about_thursday.len(), 2, "{subjects:?}");
    assert!(about_thursday[0].contains("Appointment confirmed"));
    assert!(about_thursday[1].contains("Appointment cancelled"));
    assert!(
        subjects
            .iter()
            .any(|s| s.starts_with("Subject: Reminder:") && s.contains("Nov 25")),
        "today's appointment got its reminder: {subjects:?}"
    );
    assert!(
        !subjects
            .iter()
            .any(|s| s.starts_with("Subject: Reminder:") && s.contains("Nov 26"))
    );
}

async fn reschedule_moves_reminders_and_sends_a_new_calendar(app: &TestApp) {
    let clinic = Clinic::open(app).await;
    let server = SmtpServer::start();
    let w = worker(app, smtp(&server.peer.smtp_url()), None);
    let id = book(app, &clinic, &clinic.patient, THU_10).await;
    w.drain().await.expect("drain");
    let moved = app
        .gql(
            Some(&clinic.staff),
            "mutation($id: UUID!, $s: DateTime!) { rescheduleAppointment(id: $id, start: $s) { id } }",
            json!({ "id": id, "s": "2026-11-27T15:00:00Z" }),
        )
        .await;
    moved.data();
    let planned = jobs(app, id).await;
    let pending: Vec<DateTime<Utc>> = of_kind(&planned, JobKind::Reminder)
        .iter()
        .filter(|j| j.status == JobStatus::Pending)
        .map(|j| j.run_at)
        .collect();
    assert_eq!(pending, vec![utc("2026-11-26T15:00:00Z"), utc("2026-11-27T13:00:00Z")]);
    assert_eq!(w.drain().await.expect("drain"), 1, "the reschedule notice");
    let messages = server.messages();
    assert!(unfold(&messages[1]).contains("Subject: Appointment moved: Main Street, now Fri Nov 27, 2026"));
    let calendar = &server.calendars(2)[0];
    assert_valid_ics(calendar, "2026-11-27T15:00:00Z");
    assert!(calendar.contains("SEQUENCE:2"), "calendars update the same entry");
}

async fn sweeps_expire_holds_mark_no_shows_and_prune_jobs(app: &TestApp) {
    let clinic = Clinic::open(app).await;
    let server = SmtpServer::start();
    let w = worker(app, smtp(&server.peer.smtp_url()), None);
    let id = book(app, &clinic, &clinic.patient, THU_10).await;
    w.drain().await.expect("drain");
    app.gql(
        Some(&clinic.patient_token),
        "mutation($i: HoldSlotInput!) { holdSlot(input: $i) { id } }",
        json!({ "i": { "providerId": clinic.provider, "appointmentTypeId": clinic.checkup, "start": "2026-11-26T16:00:00Z" } }),
    )
    .await
    .data();
    let mut events = app.app.services.bus.subscribe();
    app.clock.advance(Duration::minutes(6));
    let report = workers::sweep_once(&app.app.services).await;
    assert_eq!((report.holds, report.no_shows), (1, 0));
    let expired = events.recv().await.expect("event");
    assert!(
        matches!(&*expired, domain::events::DomainEvent::Slot(s) if s.reason == domain::events::SlotChangeReason::HoldExpired)
    );

    // The end (15:30) plus the 60-minute grace: a minute before, not yet; then NOSHOW.
    app.clock.set(utc("2026-11-26T16:29:00Z"));
    assert_eq!(workers::sweep_once(&app.app.services).await.no_shows, 0);
    app.clock.set(utc("2026-11-26T16:30:00Z"));
    let (first, second) = tokio::join!(
        workers::sweep_once(&app.app.services),
        workers::sweep_once(&app.app.services)
    );
    assert_eq!(first.no_shows + second.no_shows, 1, "two sweepers mark it once");
    let staff = app.login("desk@clinic.test", "staff password 1234").await;
    let status = app
        .gql(
            Some(&staff),
            "query($id: UUID!) { appointment(id: $id) { status } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(status.data()["appointment"]["status"], "NOSHOW");

    w.drain().await.expect("drain");
    let finished = jobs(app, id).await;
    assert!(
        finished
            .iter()
            .all(|j| matches!(j.status, JobStatus::Done | JobStatus::Cancelled)),
        "{finished:?}"
    );
    app.clock.advance(Duration::days(31));
    let pruned = workers::sweep_once(&app.app.services).await.jobs;
    assert_eq!(pruned as usize, finished.len());
    assert!(jobs(app, id).await.is_empty());
}

on_both_databases!(
    confirmation_email_with_ics_then_sms_after_quiet_hours,
    twilio_4xx_is_dead_lettered_at_once_and_can_be_retried,
    failing_smtp_retries_with_backoff_then_dead_letters,
    worker_killed_mid_send_leads_to_one_delivery,
    cancellation_before_the_reminder_means_no_reminder,
    reschedule_moves_reminders_and_sends_a_new_calendar,
    sweeps_expire_holds_mark_no_shows_and_prune_jobs,
);

/// Counts sends per job, answering at once (the queue is under test, not a peer).
#[derive(Default)]
struct Counting {
    sends: std::sync::Mutex<std::collections::HashMap<String, u32>>,
}

#[async_trait::async_trait]
impl EmailSender for Counting {
    async fn send(&self, email: OutgoingEmail) -> Result<String, SendError> {
        let mut sends = self.sends.lock().unwrap_or_else(|p| p.into_inner());
        *sends.entry(email.message_id.clone()).or_default() += 1;
        Ok(email.message_id)
    }
}

/// `count` due confirmation jobs of appointment `id`, written directly.
async fn insert_due_jobs(app: &TestApp, id: Uuid, count: usize) {
    let now = app.clock.now();
    let rows: Vec<entity::job::ActiveModel> = (0..count)
        .map(|n| {
            use sea_orm::ActiveValue::Set;
            entity::job::ActiveModel {
                id: Set(Uuid::now_v7()),
                kind: Set(JobKind::Confirmation.code().into()),
                payload: Set(json!({ "appointment_id": id, "version": 1 })),
                status: Set(JobStatus::Pending.code().into()),
                run_at: Set(now - Duration::seconds(1)),
                attempts: Set(0),
                max_attempts: Set(3),
                lease_owner: Set(None),
                lease_until: Set(None),
                last_error: Set(None),
                appointment_id: Set(Some(id)),
                dedupe_key: Set(Some(format!("load:{n}"))),
                created_at: Set(now),
                updated_at: Set(now),
                finished_at: Set(None),
                trace_parent: Set(None),
            }
        })
        .collect();
    use sea_orm::EntityTrait;
    for chunk in rows.chunks(200) {
        entity::job::Entity::insert_many(chunk.to_vec())
            .exec_without_returning(&app.app.services.db)
            .await
            .expect("insert jobs");
    }
}

async fn two_workers_drain(backend: Backend, count: usize) {
    let app = TestApp::spawn_with(backend, &[("CARESLOT_JOB_MAX_ATTEMPTS", "3")]).await;
    let clinic = Clinic::open(&app).await;
    let id = book(&app, &clinic, &clinic.patient, THU_10).await;
    insert_due_jobs(&app, id, count).await;
    let counting = Arc::new(Counting::default());
    let senders = Senders {
        email: counting.clone(),
        sms: None,
    };
    // The second worker has a pool of its own, as a second process would.
    let second_db = domain::db::connect(&app.app.settings.database_url, 8)
        .await
        .expect("second pool");
    let mut other = app.app.services.clone();
    if backend == Backend::Postgres {
        other.db = second_db;
    }
    let a = Worker::new(app.app.services.clone(), senders.clone(), config("worker-a"));
    let b = Worker::new(other, senders, config("worker-b"));
    let started = std::time::Instant::now();
    let (ran_a, ran_b) = tokio::join!(a.drain(), b.drain());
    let elapsed = started.elapsed();
    let (ran_a, ran_b) = (ran_a.expect("a"), ran_b.expect("b"));
    eprintln!("{backend:?}: {count} jobs in {elapsed:?} (worker a {ran_a}, worker b {ran_b})");
    let total = count + 1; // and the booking's own confirmation
    assert_eq!(ran_a + ran_b, total, "each job claimed once");
    let sends = counting.sends.lock().unwrap_or_else(|p| p.into_inner()).clone();
    assert_eq!(sends.len(), total, "every job sent");
    assert!(sends.values().all(|n| *n == 1), "no job sent twice");
    if backend == Backend::Postgres {
        assert!(ran_a > 0 && ran_b > 0, "both workers took part");
    }
}

/// Two workers running their claim loops (three batches in flight each,
/// claim cursors, full claims), as `careslot-worker` does: every job is sent
/// once and ends done, and both stop when told.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn workers_with_batches_in_flight_send_each_job_once_on_postgres() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let clinic = Clinic::open(&app).await;
    let id = book(&app, &clinic, &clinic.patient, THU_10).await;
    insert_due_jobs(&app, id, 600).await;
    let total = 601; // and the booking's own confirmation
    let counting = Arc::new(Counting::default());
    let senders = Senders {
        email: counting.clone(),
        sms: None,
    };
    let several = |name: &str| WorkerConfig {
        batches: 3,
        ..config(name)
    };
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let workers = [
        tokio::spawn(
            Worker::new(app.app.services.clone(), senders.clone(), several("a"))
                .run(stopping.clone(), std::time::Duration::from_secs(5)),
        ),
        tokio::spawn(
            Worker::new(app.app.services.clone(), senders, several("b"))
                .run(stopping, std::time::Duration::from_secs(5)),
        ),
    ];
    let sent = || counting.sends.lock().unwrap_or_else(|p| p.into_inner()).len();
    for _ in 0..400 {
        if sent() >= total {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let _ = stop.send(true);
    for worker in workers {
        worker.await.expect("worker stopped");
    }
    let sends = counting.sends.lock().unwrap_or_else(|p| p.into_inner()).clone();
    assert_eq!(sends.len(), total, "every job sent");
    assert!(sends.values().all(|n| *n == 1), "no job sent twice");
    use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
    let done = entity::job::Entity::find()
        .filter(entity::job::Column::Status.eq(JobStatus::Done.code()))
        .count(&app.app.services.db)
        .await
        .expect("count");
    assert_eq!(done as usize, total, "every job done");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_workers_drain_1000_jobs_exactly_once_on_postgres() {
    two_workers_drain(Backend::Postgres, 1000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_drain_jobs_exactly_once_on_sqlite() {
    two_workers_drain(Backend::Sqlite, 300).await;
}

async fn offsets_per_location_and_type_and_channel_opt_outs(app: &TestApp) {
    let clinic = Clinic::open(app).await;
    let create = "mutation($i: CreateLocationInput!) { createLocation(input: $i) { id } }";
    let bad = app
        .gql(
            Some(&clinic.admin),
            create,
            json!({ "i": { "name": "Bad", "timeZone": "UTC", "reminderOffsetsMinutes": [60, 60] } }),
        )
        .await;
    assert_eq!(
        (bad.code(), bad.field()),
        ("BAD_USER_INPUT", Some("input.reminderOffsetsMinutes"))
    );
    let bad = app
        .gql(
            Some(&clinic.admin),
            create,
            json!({ "i": { "name": "Bad", "timeZone": "UTC", "smsQuietHours": "late" } }),
        )
        .await;
    assert_eq!(
        (bad.code(), bad.field()),
        ("BAD_USER_INPUT", Some("input.smsQuietHours"))
    );
    let uptown = app
        .gql(
            Some(&clinic.admin),
            create,
            json!({ "i": { "name": "Uptown", "timeZone": "America/New_York", "reminderOffsetsMinutes": [180], "smsQuietHours": "off" } }),
        )
        .await;
    let uptown = uptown.data()["createLocation"]["id"].as_str().expect("id").to_owned();
    let kinds = [
        (None, vec![utc("2026-11-26T12:00:00Z")]),
        (Some(json!([45])), vec![utc("2026-11-26T14:15:00Z")]),
        (Some(json!([])), vec![]),
    ];
    let patient = patient_with_phone(app, &clinic).await;
    for (n, (offsets, expected)) in kinds.into_iter().enumerate() {
        let mut input = json!({ "name": format!("Visit {n}"), "durationMinutes": 30, "locationId": uptown });
        if let Some(offsets) = offsets {
            input["reminderOffsetsMinutes"] = offsets;
        }
        let kind = app
            .gql(
                Some(&clinic.admin),
                "mutation($i: CreateAppointmentTypeInput!) { createAppointmentType(input: $i) { id } }",
                json!({ "i": input }),
            )
            .await;
        let kind = kind.data()["createAppointmentType"]["id"]
            .as_str()
            .expect("id")
            .to_owned();
        let provider = app
            .create_provider(
                &clinic.admin,
                &format!("Dr. {n}"),
                &format!("dr{n}@clinic.test"),
                &[&uptown],
            )
            .await;
        app.gql(
            Some(&clinic.admin),
            "mutation($p: UUID!, $l: UUID!, $r: [WeeklyRuleInput!]!) { setWeeklyAvailability(providerId: $p, locationId: $l, rules: $r) { id } }",
            json!({ "p": provider, "l": uptown, "r": careslot_tests::clinic::weekdays_nine_to_five() }),
        )
        .await
        .data();
        let booked = app
            .gql(
                Some(&clinic.admin),
                "mutation($i: BookAppointmentInput!) { bookAppointment(input: $i) { id } }",
                json!({ "i": { "providerId": provider, "patientId": patient, "appointmentTypeId": kind, "start": THU_10 } }),
            )
            .await;
        let id: Uuid = booked.data()["bookAppointment"]["id"]
            .as_str()
            .expect("id")
            .parse()
            .expect("uuid");
        let due: Vec<DateTime<Utc>> = of_kind(&jobs(app, id).await, JobKind::Reminder)
            .iter()
            .map(|j| j.run_at)
            .collect();
        assert_eq!(due, expected, "type {n}");
    }

    // The patient refuses SMS: confirmations go by email only, at any hour
    // (this location has no quiet hours), the SMS is recorded as skipped.
    app.gql(
        Some(&clinic.staff),
        "mutation($id: UUID!, $i: UpdatePatientInput!) { updatePatient(id: $id, input: $i) { id } }",
        json!({ "id": patient, "i": { "notifyBySms": false } }),
    )
    .await
    .data();
    let outbox = std::env::temp_dir().join(format!("careslot-outbox-{}", Uuid::new_v4().simple()));
    let email: Arc<dyn EmailSender> =
        Arc::new(OutboxSender::new(outbox.clone(), "Careslot <no-reply@clinic.test>").expect("outbox"));
    let w = worker(app, email, Some(twilio("http://127.0.0.1:9", TWILIO_SID)));
    assert_eq!(w.drain().await.expect("drain"), 3, "three confirmations");
    assert_eq!(std::fs::read_dir(&outbox).expect("outbox").count(), 3);
    let confirmations: Vec<Job> = {
        let db = &app.app.services.db;
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
        entity::job::Entity::find()
            .filter(entity::job::Column::Kind.eq(JobKind::Confirmation.code()))
            .all(db)
            .await
            .expect("jobs")
            .into_iter()
            .map(|row| Job::try_from(row).expect("job"))
            .filter(|j| j.status == JobStatus::Done)
            .collect()
    };
    assert_eq!(confirmations.len(), 3);
    for job in confirmations {
        let deliveries = app.app.services.deliveries(job.id).await.expect("deliveries");
        let sms = deliveries.iter().find(|d| d.channel == "sms").expect("sms record");
        assert_eq!(sms.status, DeliveryStatus::Skipped);
        assert_eq!(sms.error.as_deref(), Some("the patient opted out of SMS"));
    }
    let _ = std::fs::remove_dir_all(outbox);
}

on_both_databases!(offsets_per_location_and_type_and_channel_opt_outs);
