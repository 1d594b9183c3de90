//! Bookings that arrive together are written together (one transaction per
//! batch, a statement per step), and each keeps its own answer: a refused
//! booking (unknown patient, off-grid start, unknown hold, taken interval)
//! fails alone, every written one has its history, jobs and audit record, and
//! a batch the database fails as a whole is written booking by booking.

use axum::body::Body;
use axum::http::{Request, header};
use careslot_tests::clinic::{Clinic, at, weekdays_nine_to_five};
use careslot_tests::{Backend, TestApp};
use http_body_util::BodyExt;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, TransactionTrait};
use serde_json::{Value, json};
use std::sync::atomic::Ordering;
use tokio::task::JoinHandle;
use tower::ServiceExt;
use uuid::Uuid;

const BOOK: &str = "mutation($i: BookAppointmentInput!) { bookAppointment(input: $i) { id } }";

/// Thursday 2026-11-26, 10:00 in New York: on every provider's grid.
const TEN: &str = "2026-11-26T15:00:00Z";

/// Sends every booking at once, each on its own task.
fn send_all(app: &TestApp, token: &str, inputs: Vec<Value>) -> Vec<JoinHandle<Value>> {
    inputs
        .into_iter()
        .map(|input| {
            let router = app.router.clone();
            let body = json!({ "query": BOOK, "variables": { "i": input } }).to_string();
            let request = Request::post("/graphql")
                .header(header::CONTENT_TYPE, "application/json")
                .header(header::AUTHORIZATION, format!("Bearer {token}"))
                .body(Body::from(body))
                .expect("request");
            tokio::spawn(async move {
                let response = router.oneshot(request).await.expect("router answers");
                assert_eq!(response.status(), 200);
                let bytes = response.into_body().collect().await.expect("body").to_bytes();
                serde_json::from_slice::<Value>(&bytes).expect("json")
            })
        })
        .collect()
}

/// The answers of `tasks`, in order.
async fn answers_of(tasks: Vec<JoinHandle<Value>>) -> Vec<Value> {
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.expect("task"));
    }
    answers
}

/// Sends every booking at once; answers in input order.
async fn all_at_once(app: &TestApp, token: &str, inputs: Vec<Value>) -> Vec<Value> {
    answers_of(send_all(app, token, inputs)).await
}

/// Sends every booking at once and, on PostgreSQL, holds the writers back
/// until each booking has been refused or has reached them, so those that
/// reach them gather into as few batches as there are writers, plus one.
/// (Unheld, how they gather depends on how the machine schedules the
/// requests; on SQLite the one connection already serializes the writers.)
async fn gathered(app: &TestApp, token: &str, inputs: Vec<Value>) -> Vec<Value> {
    gathered_behind(app, token, Vec::new(), inputs).await
}

/// [`gathered`], sending `first` one by one, each once a writer has taken
/// the one before (so each is a batch of its own, on a writer of its own),
/// and then `then` all at once: with as many `first` as there are writers,
/// every booking of `then` that reaches the writers is written in one batch.
/// Answers `first`'s and then `then`'s, in order.
async fn gathered_behind(app: &TestApp, token: &str, first: Vec<Value>, then: Vec<Value>) -> Vec<Value> {
    if app.backend != Backend::Postgres {
        return all_at_once(app, token, first.into_iter().chain(then).collect()).await;
    }
    let db = &app.app.services.db;
    let batches = &app.app.services.booking_batches;
    let gate = db.begin().await.expect("gate transaction");
    // Writers wait at their history insert; nothing before it writes that table.
    gate.execute_unprepared("LOCK TABLE appointment_history IN EXCLUSIVE MODE")
        .await
        .expect("gate lock");
    let mut tasks = Vec::new();
    for (n, input) in first.into_iter().enumerate() {
        tasks.extend(send_all(app, token, vec![input]));
        wait_until(|| batches.writing() > n, || format!("a writer for booking {n}")).await;
    }
    tasks.extend(send_all(app, token, then));
    wait_until(
        || tasks.iter().filter(|t| t.is_finished()).count() + batches.pending() >= tasks.len(),
        || format!("{} with the writers of {}", batches.pending(), tasks.len()),
    )
    .await;
    gate.rollback().await.expect("gate released");
    answers_of(tasks).await
}

/// Polls `done` until it holds, for 30 s at most (then fails, saying `what`).
async fn wait_until(done: impl Fn() -> bool, what: impl Fn() -> String) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "waited in vain for {}", what());
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// `count` more providers at the clinic's location, each working weekdays nine to five.
async fn providers(app: &TestApp, clinic: &Clinic, count: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for n in 0..count {
        let id = app
            .create_provider(
                &clinic.admin,
                &format!("Dr. Batch {n}"),
                &format!("batch{n}@clinic.test"),
                &[&clinic.location],
            )
            .await;
        clinic.set_rules(app, &id, weekdays_nine_to_five()).await.data();
        ids.push(id);
    }
    ids
}

fn booking(clinic: &Clinic, provider: &str, patient: &str, start: &str) -> Value {
    json!({ "providerId": provider, "patientId": patient, "appointmentTypeId": clinic.checkup, "start": start })
}

fn booked_id(answer: &Value) -> Option<Uuid> {
    answer["data"]["bookAppointment"]["id"]
        .as_str()
        .map(|id| id.parse().expect("uuid"))
}

fn code(answer: &Value) -> &str {
    answer["errors"][0]["extensions"]["code"].as_str().unwrap_or("")
}

/// Asserts the rows a booking writes with its appointment.
async fn assert_fully_written(app: &TestApp, id: Uuid) {
    let db = &app.app.services.db;
    let history = entity::appointment_history::Entity::find()
        .filter(entity::appointment_history::Column::AppointmentId.eq(id))
        .all(db)
        .await
        .expect("history");
    assert_eq!(history.len(), 1, "one history row for {id}");
    assert_eq!(history[0].action, "book");
    let jobs = app.app.services.jobs_of_appointment_unchecked(id).await.expect("jobs");
    assert!(
        jobs.iter().any(|j| j.kind == domain::jobs::JobKind::Confirmation),
        "a confirmation job for {id}"
    );
    let audits = entity::audit_log::Entity::find()
        .filter(entity::audit_log::Column::EntityId.eq(id))
        .filter(entity::audit_log::Column::Action.eq("create"))
        .all(db)
        .await
        .expect("audit");
    assert_eq!(audits.len(), 1, "one create record for {id}");
}

async fn appointments_of(app: &TestApp, patient: &str) -> usize {
    let patient: Uuid = patient.parse().expect("uuid");
    entity::appointment::Entity::find()
        .filter(entity::appointment::Column::PatientId.eq(patient))
        .all(&app.app.services.db)
        .await
        .expect("appointments")
        .len()
}

async fn refusals_fail_alone_and_bookings_are_written_together(app: &TestApp) {
    let clinic = Clinic::open(app).await;
    let good = 16;
    let doctors = providers(app, &clinic, good + 4).await;
    // The price of one booking alone, in statements.
    let before = app.statements.load(Ordering::SeqCst);
    let alone = all_at_once(
        app,
        &clinic.staff,
        vec![booking(&clinic, &doctors[good + 3], &clinic.patient, TEN)],
    )
    .await;
    let alone_id = booked_id(&alone[0]).expect("booked alone");
    let one_booking = app.statements.load(Ordering::SeqCst) - before;

    let mut inputs: Vec<Value> = doctors[..good]
        .iter()
        .map(|d| booking(&clinic, d, &clinic.patient, TEN))
        .collect();
    inputs.push(booking(&clinic, &doctors[good], &Uuid::new_v4().to_string(), TEN));
    inputs.push(booking(
        &clinic,
        &doctors[good + 1],
        &clinic.patient,
        "2026-11-26T15:07:00Z",
    ));
    let mut with_hold = booking(&clinic, &doctors[good + 2], &clinic.patient, TEN);
    with_hold["holdId"] = json!(Uuid::new_v4());
    inputs.push(with_hold);
    // The interval booked alone above: taken.
    inputs.push(booking(&clinic, &doctors[good + 3], &clinic.patient, TEN));

    let before = app.statements.load(Ordering::SeqCst);
    let answers = gathered(app, &clinic.staff, inputs).await;
    let spent = app.statements.load(Ordering::SeqCst) - before;

    let ids: Vec<Uuid> = answers[..good]
        .iter()
        .map(|a| booked_id(a).unwrap_or_else(|| panic!("booked: {a}")))
        .collect();
    assert_eq!(code(&answers[good]), "NOT_FOUND", "{}", answers[good]);
    assert_eq!(code(&answers[good + 1]), "BAD_USER_INPUT", "{}", answers[good + 1]);
    assert_eq!(answers[good + 1]["errors"][0]["extensions"]["field"], "input.start");
    assert_eq!(code(&answers[good + 2]), "NOT_FOUND", "{}", answers[good + 2]);
    assert_eq!(code(&answers[good + 3]), "SLOT_UNAVAILABLE", "{}", answers[good + 3]);
    for id in ids.iter().chain([&alone_id]) {
        assert_fully_written(app, *id).await;
    }
    assert_eq!(appointments_of(app, &clinic.patient).await, good + 1);
    // Alone, each of the 20 would cost what the first did; together they share
    // the lock, snapshot, insert, history, jobs, audit and commit statements.
    let unbatched = one_booking * (good as u64 + 4);
    assert!(
        spent * 2 < unbatched,
        "{spent} statements for {} bookings; {one_booking} for one alone",
        good + 4
    );
    // The slots answer what was written.
    let slots = clinic
        .slots(
            app,
            &clinic.staff,
            Some(&doctors[0]),
            &clinic.checkup,
            "2026-11-26T00:00:00Z",
            "2026-11-27T00:00:00Z",
        )
        .await;
    assert!(!slots.iter().any(|(_, start)| *start == at(TEN)), "10:00 is taken");
}

careslot_tests::on_both_databases!(refusals_fail_alone_and_bookings_are_written_together);

/// Bookings of one provider may share a batch: distinct intervals are all
/// written, and each booking is checked against those before it in the batch
/// as against written ones, buffers included. The pair here does not overlap
/// (so neither waits for the other before the batch), but the consult's
/// buffer reaches into the checkup: one of the two is refused, whichever
/// comes second.
async fn bookings_of_one_provider_share_a_batch_and_are_checked_against_each_other(app: &TestApp) {
    let clinic = Clinic::open(app).await;
    let consult = app
        .gql(
            Some(&clinic.staff),
            "mutation($i: CreateAppointmentTypeInput!) { createAppointmentType(input: $i) { id } }",
            json!({ "i": { "name": "Consult", "durationMinutes": 30, "bufferAfterMinutes": 30, "locationId": clinic.location } }),
        )
        .await
        .data()["createAppointmentType"]["id"]
        .as_str()
        .expect("type id")
        .to_owned();
    let doctors = providers(app, &clinic, 5).await;
    let (busy, fillers) = doctors.split_last().expect("providers");
    // One booking per writer, held at the gate, so the rest gather into one batch.
    let first: Vec<Value> = fillers
        .iter()
        .map(|d| booking(&clinic, d, &clinic.patient, TEN))
        .collect();
    let distinct = ["16:00", "16:30", "17:00", "17:30", "18:00"];
    let mut then: Vec<Value> = distinct
        .iter()
        .map(|hm| booking(&clinic, busy, &clinic.patient, &format!("2026-11-26T{hm}:00Z")))
        .collect();
    let mut with_buffer = booking(&clinic, busy, &clinic.patient, "2026-11-26T14:00:00Z");
    with_buffer["appointmentTypeId"] = json!(consult);
    then.push(with_buffer);
    then.push(booking(&clinic, busy, &clinic.patient, "2026-11-26T14:30:00Z"));

    let answers = gathered_behind(app, &clinic.staff, first, then).await;
    let booked: Vec<Option<Uuid>> = answers.iter().map(booked_id).collect();
    let fillers_and_distinct = fillers.len() + distinct.len();
    for (answer, id) in answers.iter().zip(&booked).take(fillers_and_distinct) {
        let id = id.unwrap_or_else(|| panic!("booked: {answer}"));
        assert_fully_written(app, id).await;
    }
    let pair = &answers[fillers_and_distinct..];
    let winners = pair.iter().filter(|a| booked_id(a).is_some()).count();
    assert_eq!(winners, 1, "exactly one of the pair is written: {pair:?}");
    let loser = pair.iter().find(|a| booked_id(a).is_none()).expect("a refused one");
    assert_eq!(code(loser), "SLOT_UNAVAILABLE", "{loser}");
    assert_eq!(
        appointments_of(app, &clinic.patient).await,
        fillers_and_distinct + 1,
        "nothing else was written"
    );
}

careslot_tests::on_both_databases!(bookings_of_one_provider_share_a_batch_and_are_checked_against_each_other);

/// A batch whose insert the database refuses (here a trigger, standing in
/// for any failure of the whole statement) is written again booking by
/// booking: only the booking the failure belongs to fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_failed_batch_is_written_booking_by_booking() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let clinic = Clinic::open(&app).await;
    let doomed = app
        .create_patient(
            &clinic.staff,
            json!({ "name": "Doomed Insert", "birthDate": "1970-01-01", "email": "doomed@example.org" }),
        )
        .await;
    let db = &app.app.services.db;
    db.execute_unprepared(&format!(
        "CREATE FUNCTION refuse_doomed() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN IF NEW.patient_id = '{doomed}'::uuid THEN RAISE EXCEPTION 'refused for the test'; END IF; \
         RETURN NEW; END $$; \
         CREATE TRIGGER refuse_doomed BEFORE INSERT ON appointments FOR EACH ROW EXECUTE FUNCTION refuse_doomed();"
    ))
    .await
    .expect("trigger");
    let good = 12;
    let doctors = providers(&app, &clinic, good + 1).await;
    let mut inputs: Vec<Value> = doctors[..good]
        .iter()
        .map(|d| booking(&clinic, d, &clinic.patient, TEN))
        .collect();
    // In the middle of the wave, so it shares a batch with others.
    inputs.insert(good / 2, booking(&clinic, &doctors[good], &doomed, TEN));
    let answers = all_at_once(&app, &clinic.staff, inputs).await;
    let doomed_answer = answers[good / 2].clone();
    assert_eq!(code(&doomed_answer), "INTERNAL", "{doomed_answer}");
    let written: Vec<Uuid> = answers
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != good / 2)
        .map(|(_, a)| booked_id(a).unwrap_or_else(|| panic!("booked: {a}")))
        .collect();
    assert_eq!(written.len(), good);
    for id in written {
        assert_fully_written(&app, id).await;
    }
    assert_eq!(appointments_of(&app, &clinic.patient).await, good);
    assert_eq!(appointments_of(&app, &doomed).await, 0);
}

/// The advisory-lock key the writers take for `provider`.
fn lock_key(provider: &str) -> i64 {
    domain::scheduling::provider_lock_key(domain::ids::ProviderId(provider.parse().expect("uuid")))
}

/// Batches in flight never share a provider: a booking of a provider whose
/// batch is being written waits for the batch after, so it does not make its
/// whole batch queue on that provider's lock. Here four writers are held on
/// provider locks the test owns; a second booking of the first provider and
/// one of a free provider queue behind them. When one held writer is let go,
/// it must take only the free provider's booking, which is then answered
/// while the first provider is still locked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_batches_in_flight_never_share_a_provider() {
    let app = TestApp::spawn(Backend::Postgres).await;
    let clinic = Clinic::open(&app).await;
    let doctors = providers(&app, &clinic, 5).await;
    let (free, held) = doctors.split_last().expect("providers");
    let batches = &app.app.services.booking_batches;
    // Session-level locks on one connection, so they can be let go one by one.
    let locks = app.app.services.db.begin().await.expect("lock connection");
    for doctor in held {
        locks
            .execute_unprepared(&format!("SELECT pg_advisory_lock({})", lock_key(doctor)))
            .await
            .expect("lock");
    }
    let mut tasks = Vec::new();
    for (n, doctor) in held.iter().enumerate() {
        tasks.extend(send_all(
            &app,
            &clinic.staff,
            vec![booking(&clinic, doctor, &clinic.patient, TEN)],
        ));
        wait_until(|| batches.writing() > n, || format!("a writer for held booking {n}")).await;
    }
    // Every writer is busy: these two wait in the queue together.
    let again = send_all(
        &app,
        &clinic.staff,
        vec![booking(&clinic, &held[0], &clinic.patient, "2026-11-26T16:00:00Z")],
    );
    let other = send_all(&app, &clinic.staff, vec![booking(&clinic, free, &clinic.patient, TEN)]);
    wait_until(
        || batches.pending() == held.len() + 2,
        || format!("{} pending", batches.pending()),
    )
    .await;

    locks
        .execute_unprepared(&format!("SELECT pg_advisory_unlock({})", lock_key(&held[1])))
        .await
        .expect("unlock");
    let answered = tokio::time::timeout(std::time::Duration::from_secs(20), answers_of(other))
        .await
        .expect("the free provider's booking is answered while the first provider is still locked");
    assert!(booked_id(&answered[0]).is_some(), "{}", answered[0]);
    assert!(
        !again[0].is_finished(),
        "the locked provider's second booking still waits"
    );

    // Session-level locks outlive a rollback: let them go first.
    locks
        .execute_unprepared("SELECT pg_advisory_unlock_all()")
        .await
        .expect("unlock all");
    locks.rollback().await.expect("lock connection returned");
    for answer in answers_of(tasks.into_iter().chain(again).collect()).await {
        assert!(booked_id(&answer).is_some(), "{answer}");
    }
}
