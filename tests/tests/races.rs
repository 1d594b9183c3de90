//! Double booking is impossible, not unlikely: concurrent requests for one
//! interval (or overlapping intervals of different lengths) give exactly one
//! booking, every loser `SLOT_UNAVAILABLE`; concurrent retries with one
//! idempotency key give one appointment.

use axum::body::Body;
use axum::http::{Request, header};
use careslot_tests::clinic::Clinic;
use careslot_tests::{Backend, TestApp};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

const BOOK: &str = "mutation($i: BookAppointmentInput!) { bookAppointment(input: $i) { id } }";

/// Sends every booking at once, each on its own task, and answers the responses.
async fn race(app: &TestApp, token: &str, inputs: Vec<Value>) -> Vec<Value> {
    let tasks: Vec<_> = inputs
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
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await.expect("task"));
    }
    answers
}

fn tally(answers: &[Value]) -> (Vec<String>, usize) {
    let mut ids = Vec::new();
    let mut unavailable = 0;
    for answer in answers {
        match answer["data"]["bookAppointment"]["id"].as_str() {
            Some(id) => ids.push(id.to_owned()),
            None => {
                assert_eq!(
                    answer["errors"][0]["extensions"]["code"], "SLOT_UNAVAILABLE",
                    "{answer}"
                );
                unavailable += 1;
            }
        }
    }
    (ids, unavailable)
}

/// Pairs of time-occupying appointments of one provider that overlap.
async fn overlapping_rows(app: &TestApp) -> usize {
    use sea_orm::EntityTrait;
    let rows = entity::appointment::Entity::find()
        .all(&app.app.services.db)
        .await
        .expect("rows");
    let blocking = ["pending", "booked", "arrived", "checked-in", "fulfilled"];
    let live: Vec<_> = rows.iter().filter(|r| blocking.contains(&r.status.as_str())).collect();
    let mut overlaps = 0;
    for (i, a) in live.iter().enumerate() {
        for b in &live[i + 1..] {
            if a.provider_id == b.provider_id && a.start_at < b.end_at && b.start_at < a.end_at {
                overlaps += 1;
            }
        }
    }
    overlaps
}

async fn one_interval(backend: Backend, contenders: usize) {
    let app = TestApp::spawn(backend).await;
    let clinic = Clinic::open(&app).await;
    let inputs = (0..contenders)
        .map(|_| json!({ "providerId": clinic.provider, "patientId": clinic.patient, "appointmentTypeId": clinic.checkup, "start": "2026-11-26T15:00:00Z" }))
        .collect();
    let (ids, unavailable) = tally(&race(&app, &clinic.staff, inputs).await);
    assert_eq!(ids.len(), 1, "exactly one booking");
    assert_eq!(unavailable, contenders - 1);
    assert_eq!(overlapping_rows(&app).await, 0);
}

async fn overlapping_lengths(backend: Backend, contenders: usize) {
    let app = TestApp::spawn(backend).await;
    let clinic = Clinic::open(&app).await;
    let hour = app
        .create_appointment_type(&clinic.staff, &clinic.location, "Consult", 60)
        .await;
    let long = app
        .create_appointment_type(&clinic.staff, &clinic.location, "Procedure", 90)
        .await;
    // Each of these covers 10:30-11:00 in New York (15:30Z).
    let options = [
        (clinic.checkup.clone(), "2026-11-26T15:30:00Z"),
        (hour, "2026-11-26T15:00:00Z"),
        (long, "2026-11-26T15:30:00Z"),
    ];
    let inputs = (0..contenders)
        .map(|i| {
            let (kind, start) = &options[i % options.len()];
            json!({ "providerId": clinic.provider, "patientId": clinic.patient, "appointmentTypeId": kind, "start": start })
        })
        .collect();
    let (ids, unavailable) = tally(&race(&app, &clinic.staff, inputs).await);
    assert_eq!(ids.len(), 1, "exactly one of the overlapping bookings");
    assert_eq!(unavailable, contenders - 1);
    assert_eq!(overlapping_rows(&app).await, 0);
}

async fn one_key(backend: Backend, contenders: usize) {
    let app = TestApp::spawn(backend).await;
    let clinic = Clinic::open(&app).await;
    let inputs = (0..contenders)
        .map(|_| json!({ "providerId": clinic.provider, "patientId": clinic.patient, "appointmentTypeId": clinic.checkup, "start": "2026-11-26T15:00:00Z", "idempotencyKey": "same-click" }))
        .collect();
    let answers = race(&app, &clinic.patient_token, inputs).await;
    let (ids, unavailable) = tally(&answers);
    assert_eq!(unavailable, 0, "a retry is never told its own slot is taken");
    assert_eq!(ids.len(), contenders);
    assert!(
        ids.iter().all(|id| *id == ids[0]),
        "every retry answers the first booking"
    );
    assert_eq!(overlapping_rows(&app).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_hundred_racers_one_interval() {
    one_interval(Backend::Postgres, 100).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_hundred_racers_overlapping_lengths() {
    overlapping_lengths(Backend::Postgres, 100).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_concurrent_retries_with_one_key() {
    one_key(Backend::Postgres, 30).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_racers_one_interval() {
    one_interval(Backend::Sqlite, 25).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_racers_overlapping_lengths() {
    overlapping_lengths(Backend::Sqlite, 25).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_concurrent_retries_with_one_key() {
    one_key(Backend::Sqlite, 10).await;
}

/// The exclusion constraint stands even when the application's checks are
/// bypassed: a raw overlapping insert is refused with SQLSTATE 23P01, while a
/// cancelled appointment may overlap.
#[tokio::test]
async fn postgres_exclusion_constraint_is_the_last_word() {
    use sea_orm::{ActiveModelTrait, IntoActiveModel};
    let app = TestApp::spawn(Backend::Postgres).await;
    let clinic = Clinic::open(&app).await;
    let booked = clinic
        .book(&app, &clinic.staff, &clinic.patient, "2026-11-26T15:00:00Z", json!({}))
        .await;
    let id = uuid::Uuid::parse_str(booked.data()["bookAppointment"]["id"].as_str().expect("id")).expect("uuid");
    use sea_orm::EntityTrait;
    let original = entity::appointment::Entity::find_by_id(id)
        .one(&app.app.services.db)
        .await
        .expect("query")
        .expect("row");
    let overlapping = entity::appointment::Model {
        id: uuid::Uuid::now_v7(),
        start_at: original.start_at + chrono::Duration::minutes(15),
        end_at: original.end_at + chrono::Duration::minutes(15),
        idempotency_key: None,
        ..original.clone()
    };
    let err = overlapping
        .clone()
        .into_active_model()
        .reset_all()
        .insert(&app.app.services.db)
        .await
        .expect_err("overlap refused");
    assert!(domain::db::is_exclusion_violation(&err), "{err}");
    let cancelled = entity::appointment::Model {
        status: "cancelled".into(),
        ..overlapping
    };
    cancelled
        .into_active_model()
        .reset_all()
        .insert(&app.app.services.db)
        .await
        .expect("a cancelled row may overlap");
}
