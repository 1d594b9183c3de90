//! The worker runs a claimed batch in one send phase: one read checks the
//! batch's claims and settled channels, its calls run together and are
//! recorded in one statement, and the done jobs are finished in one
//! statement. These tests hold those batched paths to the rules of a job run
//! alone: a lapsed claim is left to its new owner, a settled channel is never
//! sent again, and each job's message goes out once per channel. Real SMTP
//! (aiosmtpd) and Twilio (Prism) peers, as in `reminders.rs`.

use careslot_tests::TestApp;
use careslot_tests::clinic::Clinic;
use careslot_tests::on_both_databases;
use careslot_tests::peers::{SilentServer, SmtpServer, free_port, prism_twilio};
use chrono::{DateTime, Duration, Utc};
use domain::clock::Clock;
use domain::jobs::{
    Channel, ClaimCheck, ClaimCursor, ClaimOptions, ClaimedJob, DeliveryRecord, DeliveryStatus, Finish, Job, JobKind,
    JobStatus, Settled,
};
use sea_orm::{ConnectionTrait, EntityTrait, Statement};
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use uuid::Uuid;
use workers::{EmailSender, Senders, SmsSender, SmtpSender, TwilioConfig, TwilioSender, Worker, WorkerConfig};

const TWILIO_SID: &str = "AC00000000000000000000000000000000";

fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).expect("rfc3339").to_utc()
}

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

fn twilio(base_url: &str) -> Arc<dyn SmsSender> {
    workers::install_crypto_provider();
    Arc::new(
        TwilioSender::new(TwilioConfig {
            base_url: base_url.into(),
            account_sid: TWILIO_SID.into(),
            auth_token: "test-token".into(),
            from: "+15550001111".into(),
            timeout: std::time::Duration::from_secs(20),
        })
        .expect("twilio client"),
    )
}

fn worker(app: &TestApp, id: &str, email: Arc<dyn EmailSender>, sms: Option<Arc<dyn SmsSender>>) -> Worker {
    Worker::new(app.app.services.clone(), Senders { email, sms }, config(id))
}

async fn book(app: &TestApp, clinic: &Clinic, patient: &str, start: &str) -> Uuid {
    book_as(app, clinic, &clinic.staff, patient, start).await
}

async fn book_as(app: &TestApp, clinic: &Clinic, token: &str, patient: &str, start: &str) -> Uuid {
    let booked = clinic.book(app, token, patient, start, json!({})).await;
    booked.data()["bookAppointment"]["id"]
        .as_str()
        .expect("id")
        .parse()
        .expect("uuid")
}

async fn confirmation(app: &TestApp, appointment: Uuid) -> Job {
    app.app
        .services
        .jobs_of_appointment_unchecked(appointment)
        .await
        .expect("jobs")
        .into_iter()
        .find(|j| j.kind == JobKind::Confirmation)
        .expect("a confirmation")
}

async fn job(app: &TestApp, id: Uuid) -> Job {
    app.app.services.job_unchecked(id).await.expect("job").expect("exists")
}

/// The `Message-ID`s of the messages the SMTP server took, with how often each came.
fn message_ids(server: &SmtpServer) -> HashMap<String, usize> {
    let mut ids = HashMap::new();
    for message in server.messages() {
        let id = message
            .lines()
            .find_map(|l| {
                l.strip_prefix("Message-ID: ")
                    .or_else(|| l.strip_prefix("Message-Id: "))
            })
            .expect("a Message-ID")
            .trim()
            .to_owned();
        *ids.entry(id).or_default() += 1;
    }
    ids
}

/// `count` due confirmation jobs of one booked appointment, written directly.
async fn due_jobs(app: &TestApp, appointment: Uuid, count: usize) -> Vec<Uuid> {
    use sea_orm::ActiveValue::Set;
    let now = app.clock.now();
    let ids: Vec<Uuid> = (0..count).map(|_| Uuid::now_v7()).collect();
    let rows: Vec<entity::job::ActiveModel> = ids
        .iter()
        .enumerate()
        .map(|(n, id)| entity::job::ActiveModel {
            id: Set(*id),
            kind: Set(JobKind::Confirmation.code().into()),
            payload: Set(json!({ "appointment_id": appointment, "version": 1 })),
            status: Set(JobStatus::Pending.code().into()),
            run_at: Set(now - Duration::seconds(1)),
            attempts: Set(0),
            max_attempts: Set(5),
            lease_owner: Set(None),
            lease_until: Set(None),
            last_error: Set(None),
            appointment_id: Set(Some(appointment)),
            dedupe_key: Set(Some(format!("batch:{n}"))),
            created_at: Set(now),
            updated_at: Set(now),
            finished_at: Set(None),
            trace_parent: Set(None),
        })
        .collect();
    entity::job::Entity::insert_many(rows)
        .exec_without_returning(&app.app.services.db)
        .await
        .expect("insert jobs");
    ids
}

fn claim(id: &str, limit: u32) -> ClaimOptions {
    ClaimOptions {
        worker_id: id.into(),
        limit,
        lease: Duration::seconds(300),
        after: None,
    }
}

fn all<'a>(claims: impl IntoIterator<Item = &'a ClaimedJob>) -> Vec<&'a ClaimedJob> {
    claims.into_iter().collect()
}

/// A claim that holds with nothing settled.
const FRESH: ClaimCheck = ClaimCheck::Holds(Settled { email: None, sms: None });

/// A batch whose lease lapsed while it ran, two of its jobs taken over by
/// another worker: the check answers `LeaseLost` for every lapsed claim (and
/// that the new owner's hold, in the same call); finishing the
/// batch finishes only the jobs still under its claim and leaves the taken
/// ones running under their new owner; the new owner finds the channel the
/// first worker recorded as sent settled and does not send it again.
async fn lapsed_claims_in_a_batch_are_left_to_their_new_owner(app: &TestApp) {
    let services = &app.app.services;
    let clinic = Clinic::open(app).await;
    let appointment = book(app, &clinic, &clinic.patient, "2026-11-26T15:00:00Z").await;
    let mut ids = due_jobs(app, appointment, 5).await;
    ids.push(confirmation(app, appointment).await.id);
    let call = Duration::seconds(60);

    let first = services.claim_jobs(&claim("a", 50)).await.expect("claim");
    assert_eq!(first.len(), 6, "every due job in one batch");
    assert_eq!(
        first
            .iter()
            .map(|c| c.lease_token.as_str())
            .collect::<HashSet<_>>()
            .len(),
        1,
        "one lease token per claimed batch"
    );
    let started = services.check_claims(&all(&first), call).await.expect("check");
    assert_eq!(started, vec![FRESH; 6]);
    // A claim that would lapse before a call could end does not hold.
    let too_long = services
        .check_claims(&all(&first), Duration::seconds(301))
        .await
        .expect("check");
    assert_eq!(too_long, vec![ClaimCheck::LeaseLost; 6]);

    // The batch's lease lapses; worker b takes two of its jobs over.
    app.clock.advance(Duration::seconds(301));
    let taken = services.claim_jobs(&claim("b", 2)).await.expect("claim");
    assert_eq!(taken.len(), 2, "b takes two lapsed claims");
    let taken_ids: HashSet<Uuid> = taken.iter().map(|c| c.job.id).collect();

    // One call, two lease tokens: every lapsed claim of a is lost, b's hold.
    let mixed = services
        .check_claims(&all(first.iter().chain(&taken)), call)
        .await
        .expect("check");
    assert_eq!(mixed, [vec![ClaimCheck::LeaseLost; 6], vec![FRESH; 2]].concat());

    // a's sends went out: the truth about the peer is recorded whatever the claim.
    let sent: Vec<DeliveryRecord> = first
        .iter()
        .map(|claimed| DeliveryRecord {
            claimed,
            channel: Channel::Email,
            status: DeliveryStatus::Sent,
            provider_ref: Some(format!("<{}.email@careslot>", claimed.job.id)),
            error: None,
        })
        .collect();
    services.record_deliveries(&sent).await.expect("record");
    let done: Vec<(&ClaimedJob, Option<&str>)> = first.iter().map(|c| (c, None)).collect();
    let finished = services.finish_done(&done).await.expect("finish");
    let expected: HashSet<Uuid> = ids.iter().copied().filter(|id| !taken_ids.contains(id)).collect();
    assert_eq!(finished, expected, "only the jobs still under a's claim finish");
    for id in &ids {
        let row = job(app, *id).await;
        if taken_ids.contains(id) {
            assert_eq!(row.status, JobStatus::Running, "b's job is left running");
            assert!(row.finished_at.is_none() && row.last_error.is_none());
        } else {
            assert_eq!(row.status, JobStatus::Done);
        }
    }
    assert!(
        services.finish_done(&done).await.expect("finish again").is_empty(),
        "a second finish changes nothing"
    );

    // b: email is settled by a's record (not sent again); SMS has nothing to send.
    let checked = services.check_claims(&all(&taken), call).await.expect("check");
    let email_sent = ClaimCheck::Holds(Settled {
        email: Some(DeliveryStatus::Sent),
        sms: None,
    });
    assert_eq!(checked, vec![email_sent; 2]);
    let skip: Vec<DeliveryRecord> = taken
        .iter()
        .map(|claimed| DeliveryRecord {
            claimed,
            channel: Channel::Sms,
            status: DeliveryStatus::Skipped,
            provider_ref: None,
            error: Some("the patient has no phone number".into()),
        })
        .collect();
    services.record_deliveries(&skip).await.expect("record");
    let settled = services.check_claims(&all(&taken), call).await.expect("check");
    let both = ClaimCheck::Holds(Settled {
        email: Some(DeliveryStatus::Sent),
        sms: Some(DeliveryStatus::Skipped),
    });
    assert_eq!(settled, vec![both; 2], "a skipped channel is settled too");
    let finished = services
        .finish_done(&taken.iter().map(|c| (c, Some("a note"))).collect::<Vec<_>>())
        .await
        .expect("finish");
    assert_eq!(finished, taken_ids);
    for claimed in &taken {
        let records = services.deliveries(claimed.job.id).await.expect("deliveries");
        let sms = records.iter().find(|d| d.channel == "sms").expect("sms record");
        assert_eq!(
            (sms.status, sms.attempt, sms.error.as_deref()),
            (DeliveryStatus::Skipped, 2, Some("the patient has no phone number"))
        );
        let row = job(app, claimed.job.id).await;
        assert_eq!(
            (row.status, row.last_error.as_deref()),
            (JobStatus::Done, Some("a note"))
        );
    }
}

/// One batch holding jobs whose email an earlier attempt sent (their SMS
/// failed: Twilio was unreachable) and fresh jobs: the retried jobs' email is
/// not sent again, every SMS goes once, every job ends done.
async fn a_batch_mixing_retried_and_fresh_jobs_sends_only_unsettled_channels(app: &TestApp) {
    let clinic = Clinic::open(app).await;
    let patient = app
        .create_patient(
            &clinic.staff,
            json!({ "name": "Sam Phone", "birthDate": "1975-05-05", "email": "sam@example.org", "phone": "+15551234567" }),
        )
        .await;
    let smtp_server = SmtpServer::start();
    let prism = prism_twilio();
    app.clock.set(utc("2026-11-25T14:00:00Z")); // 09:00 in New York: SMS may go.
    // The clock moved past the first tokens' lifetime: sign in again.
    let staff = app.login("desk@clinic.test", "staff password 1234").await;
    let mut retried = Vec::new();
    for start in ["2026-11-26T15:00:00Z", "2026-11-26T15:30:00Z", "2026-11-26T16:00:00Z"] {
        retried.push(book_as(app, &clinic, &staff, &patient, start).await);
    }
    let unreachable = format!("http://127.0.0.1:{}", free_port());
    let first = worker(
        app,
        "first",
        smtp(&smtp_server.peer.smtp_url()),
        Some(twilio(&unreachable)),
    );
    assert_eq!(first.drain().await.expect("drain"), 3);
    for appointment in &retried {
        let row = confirmation(app, *appointment).await;
        assert_eq!((row.status, row.attempts), (JobStatus::Pending, 1), "SMS failed: retry");
    }
    assert_eq!(smtp_server.messages().len(), 3, "the emails went out");

    let mut fresh = Vec::new();
    for start in ["2026-11-26T16:30:00Z", "2026-11-26T17:00:00Z"] {
        fresh.push(book_as(app, &clinic, &staff, &patient, start).await);
    }
    app.clock.set(utc("2026-11-25T14:30:00Z")); // past the backoff, before any reminder
    let second = worker(
        app,
        "second",
        smtp(&smtp_server.peer.smtp_url()),
        Some(twilio(&prism.http_url())),
    );
    assert_eq!(second.run_once().await.expect("run"), 5, "one batch of five");
    let ids = message_ids(&smtp_server);
    assert_eq!(ids.len(), 5, "one email per job: {ids:?}");
    assert!(ids.values().all(|n| *n == 1), "no email twice: {ids:?}");
    for (appointment, attempts) in retried.iter().map(|a| (a, 2)).chain(fresh.iter().map(|a| (a, 1))) {
        let row = confirmation(app, *appointment).await;
        assert_eq!((row.status, row.attempts), (JobStatus::Done, attempts));
        let deliveries = app.app.services.deliveries(row.id).await.expect("deliveries");
        let email = deliveries.iter().find(|d| d.channel == "email").expect("email record");
        assert_eq!(
            (email.status, email.attempt),
            (DeliveryStatus::Sent, 1),
            "sent once, first time"
        );
        let sms = deliveries.iter().find(|d| d.channel == "sms").expect("sms record");
        assert_eq!((sms.status, sms.attempt), (DeliveryStatus::Sent, attempts));
        assert!(
            sms.provider_ref.as_deref().is_some_and(|r| r.starts_with("SM")),
            "{sms:?}"
        );
    }
}

/// A worker killed while a whole batch hangs in its sends (every job's call
/// connected to a peer that never answers): after the lease lapses another
/// worker sends each job's email exactly once.
async fn a_batch_killed_mid_send_is_sent_once_per_job(app: &TestApp) {
    let clinic = Clinic::open(app).await;
    let mut appointments = Vec::new();
    for start in ["2026-11-26T15:00:00Z", "2026-11-26T15:30:00Z", "2026-11-26T16:00:00Z"] {
        appointments.push(book(app, &clinic, &clinic.patient, start).await);
    }
    let mut jobs = Vec::new();
    for appointment in &appointments {
        jobs.push(confirmation(app, *appointment).await.id);
    }
    let silent = SilentServer::start();
    let hung = worker(app, "hung", smtp(&format!("smtp://127.0.0.1:{}", silent.port)), None);
    let crashed = tokio::spawn(async move { hung.run_once().await });
    assert!(
        silent.wait_for_connections(jobs.len()).await,
        "the whole batch reached its sends"
    );
    crashed.abort();
    let _ = crashed.await;

    let server = SmtpServer::start();
    let next = worker(app, "next", smtp(&server.peer.smtp_url()), None);
    assert_eq!(next.run_once().await.expect("claim"), 0, "the lease still holds");
    app.clock.advance(Duration::seconds(301));
    assert_eq!(next.drain().await.expect("drain"), 3);
    let ids = message_ids(&server);
    let expected: HashSet<String> = jobs.iter().map(|id| format!("<{id}.email@careslot>")).collect();
    assert_eq!(ids.keys().cloned().collect::<HashSet<_>>(), expected);
    assert!(ids.values().all(|n| *n == 1), "each job's email once: {ids:?}");
    for id in &jobs {
        let row = job(app, *id).await;
        assert_eq!((row.status, row.attempts), (JobStatus::Done, 2));
    }
}

/// Reading a batch's notices fails (one patient's contact details cannot be
/// decrypted): each job is then read and run alone, so only that patient's
/// job fails (and retries), the others are sent.
async fn a_batch_that_cannot_be_read_runs_its_jobs_one_by_one(app: &TestApp) {
    let clinic = Clinic::open(app).await;
    let other = app
        .create_patient(
            &clinic.staff,
            json!({ "name": "Sam Other", "birthDate": "1975-05-05", "email": "sam@example.org" }),
        )
        .await;
    let good = book(app, &clinic, &clinic.patient, "2026-11-26T15:00:00Z").await;
    let bad = book(app, &clinic, &other, "2026-11-26T15:30:00Z").await;
    // The name's ciphertext under the email's field: it does not decrypt.
    let db = &app.app.services.db;
    let sql = match db.get_database_backend() {
        sea_orm::DbBackend::Postgres => "UPDATE patients SET email_enc = name_enc WHERE id = $1",
        _ => "UPDATE patients SET email_enc = name_enc WHERE id = ?",
    };
    let other_id: Uuid = other.parse().expect("uuid");
    db.execute_raw(Statement::from_sql_and_values(
        db.get_database_backend(),
        sql,
        [other_id.into()],
    ))
    .await
    .expect("corrupt");
    let server = SmtpServer::start();
    let w = worker(app, "w", smtp(&server.peer.smtp_url()), None);
    assert_eq!(w.run_once().await.expect("run"), 2);
    let good = confirmation(app, good).await;
    assert_eq!(good.status, JobStatus::Done, "the readable job ran");
    let bad = confirmation(app, bad).await;
    assert_eq!(
        (bad.status, bad.last_error.as_deref()),
        (JobStatus::Pending, Some("internal error (see the worker log)")),
        "the unreadable job retries"
    );
    let ids = message_ids(&server);
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert!(ids.contains_key(&format!("<{}.email@careslot>", good.id)));
}

/// Without SMS in the deployment, a job records its email and no SMS row:
/// that SMS is not configured is the deployment's fact, not the job's, and a
/// `skipped` row on every job only said it again. The job still ends done,
/// its email sent once.
async fn without_sms_a_job_records_its_email_only(app: &TestApp) {
    let clinic = Clinic::open(app).await;
    let appointment = book(app, &clinic, &clinic.patient, "2026-11-26T15:00:00Z").await;
    let server = SmtpServer::start();
    let w = worker(app, "w", smtp(&server.peer.smtp_url()), None);
    assert_eq!(w.run_once().await.expect("run"), 1, "the confirmation");
    let job = confirmation(app, appointment).await;
    assert_eq!(job.status, JobStatus::Done);
    let deliveries = app.app.services.deliveries(job.id).await.expect("deliveries");
    let channels: Vec<(&str, DeliveryStatus)> = deliveries.iter().map(|d| (d.channel.as_str(), d.status)).collect();
    assert_eq!(channels, vec![("email", DeliveryStatus::Sent)]);
    assert_eq!(message_ids(&server).len(), 1);
}

/// A worker's claims go on after the last job it claimed ([`ClaimCursor`]):
/// a job put back behind the cursor is passed over by those claims and taken
/// by the next claim from the oldest due job, which comes round within
/// [`ClaimCursor::FULL_CLAIM_EVERY`]; lapsed leases are looked for by full
/// claims only.
async fn a_job_behind_the_claim_cursor_waits_for_the_next_full_claim(app: &TestApp) {
    let services = &app.app.services;
    let clinic = Clinic::open(app).await;
    let appointment = book(app, &clinic, &clinic.patient, "2026-11-26T15:00:00Z").await;
    // Three jobs due before the booking's confirmation, oldest first.
    let ids = due_jobs(app, appointment, 3).await;
    let mut cursor = ClaimCursor::default();
    let next = |cursor: &mut ClaimCursor| {
        let now = app.clock.now();
        let start = cursor.start(now);
        let options = ClaimOptions {
            after: start,
            ..claim("a", 1)
        };
        async move {
            let claimed = services.claim_jobs(&options).await.expect("claim");
            (start, claimed, now)
        }
    };
    let (start, first, now) = next(&mut cursor).await;
    assert_eq!(
        (start, first[0].job.id),
        (None, ids[0]),
        "the first claim starts from the oldest"
    );
    cursor.advance(start, &first, 1, now);
    assert!(services.finish_job(&first[0], Finish::Release).await.expect("release"));

    let (start, second, now) = next(&mut cursor).await;
    assert!(start.is_some());
    assert_eq!(second[0].job.id, ids[1], "the put-back job is behind the cursor");
    cursor.advance(start, &second, 1, now);
    let (start, third, now) = next(&mut cursor).await;
    assert_eq!(third[0].job.id, ids[2]);
    cursor.advance(start, &third, 1, now);

    app.clock.advance(ClaimCursor::FULL_CLAIM_EVERY);
    let (start, fourth, _) = next(&mut cursor).await;
    assert_eq!((start, fourth[0].job.id), (None, ids[0]), "the full claim takes it");

    // Only claims from the oldest due job look for lapsed leases.
    app.clock.advance(Duration::seconds(400));
    let beyond = Some((app.clock.now() + Duration::days(1), Uuid::max()));
    let cursor_claim = ClaimOptions {
        after: beyond,
        ..claim("b", 10)
    };
    assert!(
        services.claim_jobs(&cursor_claim).await.expect("claim").is_empty(),
        "a cursor claim leaves lapsed leases to the next full claim"
    );
    let lapsed: HashSet<Uuid> = services
        .claim_jobs(&claim("b", 3))
        .await
        .expect("claim")
        .iter()
        .map(|c| c.job.id)
        .collect();
    assert_eq!(lapsed, ids.iter().copied().collect(), "the full claim takes them over");
}

on_both_databases!(
    lapsed_claims_in_a_batch_are_left_to_their_new_owner,
    a_batch_mixing_retried_and_fresh_jobs_sends_only_unsettled_channels,
    a_batch_killed_mid_send_is_sent_once_per_job,
    a_batch_that_cannot_be_read_runs_its_jobs_one_by_one,
    a_job_behind_the_claim_cursor_waits_for_the_next_full_claim,
    without_sms_a_job_records_its_email_only,
);
