//! The scheduling engine through the real router, on SQLite and PostgreSQL:
//! slots, holds, booking, the status workflow, rescheduling, roles, events.

use careslot_tests::clinic::{Clinic, at};
use careslot_tests::{TestApp, on_both_databases};
use chrono::Duration;
use domain::events::DomainEvent;
use serde_json::{Value, json};

const THU_10: &str = "2026-11-26T15:00:00Z"; // 10:00 in New York

async fn slots_follow_the_weekly_rules(app: &TestApp) {
    let clinic = Clinic::open(app).await;
    let thursday = clinic.thursday(app, &clinic.patient_token).await;
    assert_eq!(thursday.len(), 16, "09:00-17:00 in 30-minute slots");
    assert_eq!(thursday.first(), Some(&at("2026-11-26T14:00:00Z")));
    assert_eq!(thursday.last(), Some(&at("2026-11-26T21:30:00Z")));
    // Saturday is not a working day; today's morning is already past (it is 07:00 in New York, so 09:00 is still ahead).
    let saturday = clinic
        .slots(
            app,
            &clinic.staff,
            Some(&clinic.provider),
            &clinic.checkup,
            "2026-11-28T00:00:00Z",
            "2026-11-29T00:00:00Z",
        )
        .await;
    assert!(saturday.is_empty());

    // Every provider at the location, ordered by start then provider.
    let second = app
        .create_provider(&clinic.admin, "Dr. Black", "black@clinic.test", &[&clinic.location])
        .await;
    clinic
        .set_rules(
            app,
            &second,
            json!([{ "weekday": 4, "startTime": "09:00", "endTime": "10:00" }]),
        )
        .await
        .data();
    let both = clinic
        .slots(
            app,
            &clinic.staff,
            None,
            &clinic.checkup,
            "2026-11-26T14:00:00Z",
            "2026-11-26T15:00:00Z",
        )
        .await;
    let mut expected = vec![
        (clinic.provider.clone(), at("2026-11-26T14:00:00Z")),
        (second.clone(), at("2026-11-26T14:00:00Z")),
        (clinic.provider.clone(), at("2026-11-26T14:30:00Z")),
        (second.clone(), at("2026-11-26T14:30:00Z")),
    ];
    expected.sort_by(|a, b| (&a.1, &a.0).cmp(&(&b.1, &b.0)));
    assert_eq!(both, expected);

    let query = "query($i: AvailableSlotsInput!) { availableSlots(input: $i) { start } }";
    let ask = |from: &str, to: &str, kind: &str| json!({ "i": { "appointmentTypeId": kind, "from": from, "to": to } });
    let too_long = app
        .gql(
            Some(&clinic.staff),
            query,
            ask("2026-11-26T00:00:00Z", "2027-01-26T00:00:00Z", &clinic.checkup),
        )
        .await;
    assert_eq!(
        (too_long.code(), too_long.field()),
        ("BAD_USER_INPUT", Some("input.to"))
    );
    let backwards = app
        .gql(
            Some(&clinic.staff),
            query,
            ask("2026-11-27T00:00:00Z", "2026-11-26T00:00:00Z", &clinic.checkup),
        )
        .await;
    assert_eq!(
        (backwards.code(), backwards.field()),
        ("BAD_USER_INPUT", Some("input.to"))
    );
    let unknown = app
        .gql(
            Some(&clinic.staff),
            query,
            ask(
                "2026-11-26T00:00:00Z",
                "2026-11-27T00:00:00Z",
                &uuid::Uuid::new_v4().to_string(),
            ),
        )
        .await;
    assert_eq!(unknown.code(), "NOT_FOUND");
    let bad_time = app
        .gql(
            Some(&clinic.staff),
            query,
            ask("yesterday", "2026-11-27T00:00:00Z", &clinic.checkup),
        )
        .await;
    assert_eq!(bad_time.code(), "BAD_USER_INPUT");
    assert_eq!(
        app.gql(
            None,
            query,
            ask("2026-11-26T00:00:00Z", "2026-11-27T00:00:00Z", &clinic.checkup)
        )
        .await
        .code(),
        "UNAUTHENTICATED"
    );
}

async fn rules_are_validated(app: &TestApp) {
    let clinic = Clinic::open(app).await;
    for (rules, field) in [
        (
            json!([{ "weekday": 0, "startTime": "09:00", "endTime": "10:00" }]),
            "rules.0.weekday",
        ),
        (
            json!([{ "weekday": 1, "startTime": "10:00", "endTime": "09:00" }]),
            "rules.0.endTime",
        ),
        (
            json!([{ "weekday": 1, "startTime": "9am", "endTime": "10:00" }]),
            "rules.0.startTime",
        ),
        (
            json!([{ "weekday": 1, "startTime": "09:00", "endTime": "12:00" }, { "weekday": 1, "startTime": "11:00", "endTime": "13:00" }]),
            "rules.1",
        ),
    ] {
        let response = clinic.set_rules(app, &clinic.provider, rules).await;
        assert_eq!((response.code(), response.field()), ("BAD_USER_INPUT", Some(field)));
    }
    // A refused replacement changes nothing.
    assert_eq!(clinic.thursday(app, &clinic.staff).await.len(), 16);
    let elsewhere = app.create_location(&clinic.admin, "Elsewhere", "UTC").await;
    let set_elsewhere =
        "mutation($p: UUID!, $l: UUID!) { setWeeklyAvailability(providerId: $p, locationId: $l, rules: []) { id } }";
    let not_there = app
        .gql(
            Some(&clinic.admin),
            set_elsewhere,
            json!({ "p": clinic.provider, "l": elsewhere }),
        )
        .await;
    assert_eq!(
        (not_there.code(), not_there.field()),
        ("BAD_USER_INPUT", Some("locationId"))
    );
    // The front desk of Main Street does not run another location's calendar.
    let not_theirs = app
        .gql(
            Some(&clinic.staff),
            set_elsewhere,
            json!({ "p": clinic.provider, "l": elsewhere }),
        )
        .await;
    assert_eq!(not_theirs.code(), "FORBIDDEN");
    let by_patient = app
        .gql(
            Some(&clinic.patient_token),
            "mutation($p: UUID!, $l: UUID!) { setWeeklyAvailability(providerId: $p, locationId: $l, rules: []) { id } }",
            json!({ "p": clinic.provider, "l": clinic.location }),
        )
        .await;
    assert_eq!(by_patient.code(), "FORBIDDEN");
    // Emptying the rules empties the schedule.
    clinic.set_rules(app, &clinic.provider, json!([])).await.data();
    assert!(clinic.thursday(app, &clinic.staff).await.is_empty());
}

async fn booking_takes_the_slot_and_bad_input_writes_nothing(app: &TestApp) {
    let clinic = Clinic::open(app).await;
    let booked = clinic
        .book(app, &clinic.patient_token, &clinic.patient, THU_10, json!({}))
        .await;
    let appointment = &booked.data()["bookAppointment"];
    assert_eq!(appointment["status"], "BOOKED");
    assert_eq!(appointment["start"], at(THU_10));
    assert_eq!(appointment["end"], at("2026-11-26T15:30:00Z"));
    assert_eq!(appointment["provider"]["id"], clinic.provider);
    assert_eq!(appointment["patient"]["name"], "Pat Patient");
    assert_eq!(appointment["appointmentType"]["durationMinutes"], 30);
    assert_eq!(appointment["locationId"], clinic.location);
    assert!(!clinic.thursday(app, &clinic.staff).await.contains(&at(THU_10)));

    let other = app
        .create_patient(&clinic.staff, json!({ "name": "Other", "birthDate": "1970-01-01" }))
        .await;
    let taken = clinic.book(app, &clinic.staff, &other, THU_10, json!({})).await;
    assert_eq!(taken.code(), "SLOT_UNAVAILABLE");
    let with_offset = clinic
        .book(app, &clinic.staff, &other, "2026-11-26T10:00:00-05:00", json!({}))
        .await;
    assert_eq!(
        with_offset.code(),
        "SLOT_UNAVAILABLE",
        "the same instant in another offset is the same slot"
    );
    let off_grid = clinic
        .book(app, &clinic.staff, &other, "2026-11-26T16:10:00Z", json!({}))
        .await;
    assert_eq!(
        (off_grid.code(), off_grid.field()),
        ("BAD_USER_INPUT", Some("input.start"))
    );
    let after_hours = clinic
        .book(app, &clinic.staff, &other, "2026-11-26T23:00:00Z", json!({}))
        .await;
    assert_eq!(after_hours.code(), "SLOT_UNAVAILABLE");
    let past = clinic
        .book(app, &clinic.staff, &other, "2026-11-24T15:00:00Z", json!({}))
        .await;
    assert_eq!(past.code(), "SLOT_UNAVAILABLE");
    let no_patient = clinic
        .book(
            app,
            &clinic.staff,
            &uuid::Uuid::new_v4().to_string(),
            "2026-11-26T16:00:00Z",
            json!({}),
        )
        .await;
    assert_eq!(no_patient.code(), "NOT_FOUND");
    let no_type = clinic
        .book(
            app,
            &clinic.staff,
            &other,
            "2026-11-26T16:00:00Z",
            json!({ "appointmentTypeId": uuid::Uuid::new_v4() }),
        )
        .await;
    assert_eq!(no_type.code(), "NOT_FOUND");
    let malformed = clinic
        .book(app, &clinic.staff, "not-a-uuid", "2026-11-26T16:00:00Z", json!({}))
        .await;
    assert_eq!(malformed.code(), "BAD_USER_INPUT");

    app.gql(
        Some(&clinic.staff),
        "mutation($i: TimeOffInput!) { addTimeOff(input: $i) }",
        json!({ "i": { "providerId": clinic.provider, "start": "2026-11-26T18:00:00Z", "end": "2026-11-26T19:00:00Z", "reason": "training" } }),
    )
    .await
    .data();
    let in_time_off = clinic
        .book(app, &clinic.staff, &other, "2026-11-26T18:30:00Z", json!({}))
        .await;
    assert_eq!(in_time_off.code(), "SLOT_UNAVAILABLE");
    let backwards = app
        .gql(
            Some(&clinic.staff),
            "mutation($i: TimeOffInput!) { addTimeOff(input: $i) }",
            json!({ "i": { "providerId": clinic.provider, "start": "2026-11-26T19:00:00Z", "end": "2026-11-26T18:00:00Z" } }),
        )
        .await;
    assert_eq!(
        (backwards.code(), backwards.field()),
        ("BAD_USER_INPUT", Some("input.end"))
    );
    let thursday = clinic.thursday(app, &clinic.staff).await;
    assert_eq!(thursday.len(), 16 - 1 - 2, "one booked, two in time off");

    let all = app
        .gql(
            Some(&clinic.staff),
            "{ appointments(filter: {}) { edges { node { id } } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        all.data()["appointments"]["edges"].as_array().map(Vec::len),
        Some(1),
        "refused bookings wrote nothing"
    );
}

async fn holds_block_others_and_expire_by_the_clock(app: &TestApp) {
    let clinic = Clinic::open(app).await;
    let hold = |start: &str| {
        app.gql(
            Some(&clinic.patient_token),
            "mutation($i: HoldSlotInput!) { holdSlot(input: $i) { id providerId start end expiresAt } }",
            json!({ "i": { "providerId": clinic.provider, "appointmentTypeId": clinic.checkup, "start": start } }),
        )
    };
    let held = hold("2026-11-26T16:00:00Z").await;
    let held = &held.data()["holdSlot"];
    assert_eq!(held["expiresAt"], at("2026-11-25T12:05:00Z"), "five minutes by default");
    let hold_id = held["id"].as_str().expect("id").to_owned();
    let sixteen = at("2026-11-26T16:00:00Z");
    assert!(
        !clinic.thursday(app, &clinic.staff).await.contains(&sixteen),
        "others see it taken"
    );
    assert!(
        clinic.thursday(app, &clinic.patient_token).await.contains(&sixteen),
        "the holder still sees it"
    );
    let other = app
        .create_patient(&clinic.staff, json!({ "name": "Other", "birthDate": "1970-01-01" }))
        .await;
    assert_eq!(
        clinic
            .book(app, &clinic.staff, &other, "2026-11-26T16:00:00Z", json!({}))
            .await
            .code(),
        "SLOT_UNAVAILABLE"
    );
    let again = hold("2026-11-26T16:00:00Z").await;
    assert_eq!(
        again.data()["holdSlot"]["id"],
        hold_id.as_str(),
        "holding again answers the same hold"
    );
    let by_staff = app
        .gql(
            Some(&clinic.staff),
            "mutation($i: HoldSlotInput!) { holdSlot(input: $i) { id } }",
            json!({ "i": { "providerId": clinic.provider, "appointmentTypeId": clinic.checkup, "start": "2026-11-26T16:00:00Z" } }),
        )
        .await;
    assert_eq!(by_staff.code(), "SLOT_UNAVAILABLE", "someone else's hold");

    // The holder books their hold; the hold is used up.
    let booked = clinic
        .book(
            app,
            &clinic.patient_token,
            &clinic.patient,
            "2026-11-26T16:00:00Z",
            json!({ "holdId": hold_id }),
        )
        .await;
    assert_eq!(booked.data()["bookAppointment"]["status"], "BOOKED");
    let release = "mutation($id: UUID!) { releaseHold(id: $id) }";
    assert_eq!(
        app.gql(Some(&clinic.patient_token), release, json!({ "id": hold_id }))
            .await
            .code(),
        "NOT_FOUND"
    );

    // An expired hold frees itself, with no sweep.
    let second = hold("2026-11-26T17:00:00Z").await;
    let second_id = second.data()["holdSlot"]["id"].as_str().expect("id").to_owned();
    app.clock.advance(Duration::minutes(6));
    assert!(
        clinic
            .thursday(app, &clinic.staff)
            .await
            .contains(&at("2026-11-26T17:00:00Z"))
    );
    let late = clinic
        .book(
            app,
            &clinic.patient_token,
            &clinic.patient,
            "2026-11-26T17:00:00Z",
            json!({ "holdId": second_id }),
        )
        .await;
    assert_eq!(late.code(), "SLOT_UNAVAILABLE");
    assert_eq!(app.app.services.sweep_expired_holds().await.expect("sweep"), 1);

    // Releasing frees at once; nobody releases another's hold.
    let third = hold("2026-11-26T18:00:00Z").await;
    let third_id = third.data()["holdSlot"]["id"].as_str().expect("id").to_owned();
    let stranger = app
        .create_patient(
            &clinic.staff,
            json!({ "name": "S", "birthDate": "1970-01-01", "email": "s@x.org", "password": "long enough password" }),
        )
        .await;
    assert!(!stranger.is_empty());
    let stranger_token = app.login("s@x.org", "long enough password").await;
    assert_eq!(
        app.gql(Some(&stranger_token), release, json!({ "id": third_id }))
            .await
            .code(),
        "NOT_FOUND"
    );
    assert_eq!(
        app.gql(Some(&clinic.patient_token), release, json!({ "id": third_id }))
            .await
            .data()["releaseHold"],
        true
    );
    assert!(
        clinic
            .thursday(app, &clinic.staff)
            .await
            .contains(&at("2026-11-26T18:00:00Z"))
    );
    let by_provider = app
        .gql(
            Some(&clinic.provider_token),
            "mutation($i: HoldSlotInput!) { holdSlot(input: $i) { id } }",
            json!({ "i": { "providerId": clinic.provider, "appointmentTypeId": clinic.checkup, "start": "2026-11-26T19:00:00Z" } }),
        )
        .await;
    assert_eq!(by_provider.code(), "FORBIDDEN");
}

async fn idempotent_retries_return_the_first_booking(app: &TestApp) {
    let clinic = Clinic::open(app).await;
    let key = json!({ "idempotencyKey": "retry-1" });
    let first = clinic
        .book(app, &clinic.patient_token, &clinic.patient, THU_10, key.clone())
        .await;
    let again = clinic
        .book(app, &clinic.patient_token, &clinic.patient, THU_10, key.clone())
        .await;
    assert_eq!(
        first.data()["bookAppointment"]["id"],
        again.data()["bookAppointment"]["id"]
    );
    let other_input = clinic
        .book(app, &clinic.patient_token, &clinic.patient, "2026-11-26T16:00:00Z", key)
        .await;
    assert_eq!(
        (other_input.code(), other_input.field()),
        ("BAD_USER_INPUT", Some("input.idempotencyKey"))
    );
    let all = app
        .gql(
            Some(&clinic.staff),
            "{ appointments(filter: {}) { edges { node { id } } } }",
            json!({}),
        )
        .await;
    assert_eq!(all.data()["appointments"]["edges"].as_array().map(Vec::len), Some(1));
}

async fn the_status_workflow(app: &TestApp) {
    let clinic = Clinic::open(app).await;
    let id = |g: &careslot_tests::Gql| g.data()["bookAppointment"]["id"].as_str().expect("id").to_owned();
    let visit = id(&clinic
        .book(app, &clinic.staff, &clinic.patient, THU_10, json!({}))
        .await);

    assert_eq!(
        clinic
            .change(app, &clinic.staff, "completeAppointment", &visit)
            .await
            .code(),
        "INVALID_TRANSITION"
    );
    assert_eq!(
        clinic
            .change(app, &clinic.staff, "checkInAppointment", &visit)
            .await
            .code(),
        "INVALID_TRANSITION"
    );
    assert_eq!(
        clinic.change(app, &clinic.staff, "markNoShow", &visit).await.code(),
        "INVALID_TRANSITION",
        "before the start"
    );
    for (mutation, status) in [
        ("markArrived", "ARRIVED"),
        ("checkInAppointment", "CHECKED_IN"),
        ("completeAppointment", "FULFILLED"),
    ] {
        let response = clinic.change(app, &clinic.provider_token, mutation, &visit).await;
        assert_eq!(response.data()[mutation]["status"], status);
    }
    assert_eq!(
        clinic
            .change(app, &clinic.staff, "cancelAppointment", &visit)
            .await
            .code(),
        "INVALID_TRANSITION"
    );
    assert_eq!(
        clinic.change(app, &clinic.staff, "markArrived", &visit).await.code(),
        "INVALID_TRANSITION"
    );

    // No-show only once the start has passed; it frees the interval.
    let missed = id(&clinic
        .book(app, &clinic.staff, &clinic.patient, "2026-11-26T16:00:00Z", json!({}))
        .await);
    app.clock.set(
        chrono::DateTime::parse_from_rfc3339("2026-11-26T16:05:00Z")
            .expect("time")
            .to_utc(),
    );
    let staff = app.login("desk@clinic.test", "staff password 1234").await;
    let clinic = Clinic { staff, ..clinic };
    assert_eq!(
        clinic.change(app, &clinic.staff, "markNoShow", &missed).await.data()["markNoShow"]["status"],
        "NOSHOW"
    );
    assert_eq!(
        clinic.change(app, &clinic.staff, "markArrived", &missed).await.code(),
        "INVALID_TRANSITION"
    );

    // Cancelling keeps the reason and frees the slot.
    let later = id(&clinic
        .book(app, &clinic.staff, &clinic.patient, "2026-11-27T15:00:00Z", json!({}))
        .await);
    let cancelled = app
        .gql(
            Some(&clinic.staff),
            "mutation($id: UUID!) { cancelAppointment(id: $id, reason: \"patient is travelling\") { status cancellationReason } }",
            json!({ "id": later }),
        )
        .await;
    assert_eq!(
        cancelled.data()["cancelAppointment"],
        json!({ "status": "CANCELLED", "cancellationReason": "patient is travelling" })
    );
    let friday = clinic
        .slots(
            app,
            &clinic.staff,
            Some(&clinic.provider),
            &clinic.checkup,
            "2026-11-27T00:00:00Z",
            "2026-11-28T00:00:00Z",
        )
        .await;
    assert!(friday.iter().any(|(_, s)| *s == at("2026-11-27T15:00:00Z")));
    assert_eq!(
        clinic
            .change(app, &clinic.staff, "cancelAppointment", &later)
            .await
            .code(),
        "INVALID_TRANSITION"
    );
    assert_eq!(
        clinic
            .change(app, &clinic.staff, "markArrived", &uuid::Uuid::new_v4().to_string())
            .await
            .code(),
        "NOT_FOUND"
    );
}

async fn patients_keep_to_the_notice_window_and_staff_overrides_are_recorded(app: &TestApp) {
    let clinic = Clinic::open(app).await;
    let id = |g: &careslot_tests::Gql| g.data()["bookAppointment"]["id"].as_str().expect("id").to_owned();
    // Now is 2026-11-25 12:00Z; the location's notice window is a day.
    let soon = id(&clinic
        .book(
            app,
            &clinic.patient_token,
            &clinic.patient,
            "2026-11-25T21:00:00Z",
            json!({}),
        )
        .await);
    let far = id(&clinic
        .book(
            app,
            &clinic.patient_token,
            &clinic.patient,
            "2026-11-30T15:00:00Z",
            json!({}),
        )
        .await);
    assert_eq!(
        clinic
            .change(app, &clinic.patient_token, "cancelAppointment", &soon)
            .await
            .code(),
        "INVALID_TRANSITION"
    );
    let moved = app
        .gql(
            Some(&clinic.patient_token),
            "mutation($id: UUID!) { rescheduleAppointment(id: $id, start: \"2026-11-30T16:00:00Z\") { id } }",
            json!({ "id": soon }),
        )
        .await;
    assert_eq!(moved.code(), "INVALID_TRANSITION");
    assert_eq!(
        clinic
            .change(app, &clinic.patient_token, "cancelAppointment", &far)
            .await
            .data()["cancelAppointment"]["status"],
        "CANCELLED"
    );
    assert_eq!(
        clinic
            .change(app, &clinic.staff, "cancelAppointment", &soon)
            .await
            .data()["cancelAppointment"]["status"],
        "CANCELLED"
    );
    let history = entity::appointment_history::Entity::find()
        .filter(entity::appointment_history::Column::AppointmentId.eq(uuid::Uuid::parse_str(&soon).expect("uuid")))
        .filter(entity::appointment_history::Column::ToStatus.eq("cancelled"))
        .one(&app.app.services.db)
        .await
        .expect("query")
        .expect("history row");
    assert!(
        history.note.as_deref().unwrap_or("").starts_with("override"),
        "{history:?}"
    );
}

use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

async fn rescheduling_moves_in_place_and_keeps_history(app: &TestApp) {
    let clinic = Clinic::open(app).await;
    let booked = clinic
        .book(
            app,
            &clinic.patient_token,
            &clinic.patient,
            "2026-11-30T15:00:00Z",
            json!({}),
        )
        .await;
    let id = booked.data()["bookAppointment"]["id"].as_str().expect("id").to_owned();
    let other = app
        .create_patient(&clinic.staff, json!({ "name": "Other", "birthDate": "1970-01-01" }))
        .await;
    clinic
        .book(app, &clinic.staff, &other, "2026-11-30T17:00:00Z", json!({}))
        .await
        .data();
    let reschedule =
        "mutation($id: UUID!, $s: DateTime!) { rescheduleAppointment(id: $id, start: $s) { id status start end } }";
    let onto_taken = app
        .gql(
            Some(&clinic.patient_token),
            reschedule,
            json!({ "id": id, "s": "2026-11-30T17:00:00Z" }),
        )
        .await;
    assert_eq!(onto_taken.code(), "SLOT_UNAVAILABLE");
    let off_grid = app
        .gql(
            Some(&clinic.patient_token),
            reschedule,
            json!({ "id": id, "s": "2026-11-30T17:07:00Z" }),
        )
        .await;
    assert_eq!((off_grid.code(), off_grid.field()), ("BAD_USER_INPUT", Some("start")));
    // Moving by 30 minutes overlaps the old interval: allowed, the appointment does not block itself.
    let moved = app
        .gql(
            Some(&clinic.patient_token),
            reschedule,
            json!({ "id": id, "s": "2026-11-30T15:30:00Z" }),
        )
        .await;
    assert_eq!(
        moved.data()["rescheduleAppointment"],
        json!({ "id": id, "status": "BOOKED", "start": at("2026-11-30T15:30:00Z"), "end": at("2026-11-30T16:00:00Z") })
    );
    let monday = clinic
        .slots(
            app,
            &clinic.staff,
            Some(&clinic.provider),
            &clinic.checkup,
            "2026-11-30T15:00:00Z",
            "2026-11-30T16:00:00Z",
        )
        .await;
    assert_eq!(
        monday.into_iter().map(|(_, s)| s).collect::<Vec<_>>(),
        [at("2026-11-30T15:00:00Z")]
    );
    let history = entity::appointment_history::Entity::find()
        .filter(entity::appointment_history::Column::Action.eq("reschedule"))
        .one(&app.app.services.db)
        .await
        .expect("query")
        .expect("history row");
    assert_eq!(
        history.old_start_at.map(|t| t.to_rfc3339()),
        Some(at("2026-11-30T15:00:00Z"))
    );
    assert_eq!(history.new_start_at.to_rfc3339(), at("2026-11-30T15:30:00Z"));
}

async fn who_may_see_and_book_what(app: &TestApp) {
    let clinic = Clinic::open(app).await;
    let other = app
        .create_patient(&clinic.staff, json!({ "name": "Olga Other", "birthDate": "1970-01-01", "email": "olga@x.org", "password": "long enough password" }))
        .await;
    let olga = app.login("olga@x.org", "long enough password").await;
    assert_eq!(
        clinic
            .book(app, &clinic.patient_token, &other, THU_10, json!({}))
            .await
            .code(),
        "FORBIDDEN"
    );
    assert_eq!(
        clinic
            .book(app, &clinic.provider_token, &clinic.patient, THU_10, json!({}))
            .await
            .code(),
        "FORBIDDEN"
    );
    let mine = clinic
        .book(app, &clinic.patient_token, &clinic.patient, THU_10, json!({}))
        .await;
    let mine = mine.data()["bookAppointment"]["id"].as_str().expect("id").to_owned();
    clinic
        .book(app, &olga, &other, "2026-11-26T16:00:00Z", json!({}))
        .await
        .data();

    let get = "query($id: UUID!) { appointment(id: $id) { id patient { name } } }";
    assert_eq!(
        app.gql(Some(&clinic.patient_token), get, json!({ "id": mine }))
            .await
            .data()["appointment"]["patient"]["name"],
        "Pat Patient"
    );
    assert_eq!(
        app.gql(Some(&olga), get, json!({ "id": mine })).await.data()["appointment"],
        Value::Null
    );
    assert_eq!(
        app.gql(Some(&clinic.provider_token), get, json!({ "id": mine }))
            .await
            .data()["appointment"]["id"],
        mine
    );
    let list = "{ appointments(filter: {}) { edges { node { patient { name } } } } }";
    let names = |g: careslot_tests::Gql| {
        g.data()["appointments"]["edges"]
            .as_array()
            .expect("edges")
            .iter()
            .map(|e| e["node"]["patient"]["name"].as_str().expect("name").to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(names(app.gql(Some(&olga), list, json!({})).await), ["Olga Other"]);
    assert_eq!(
        names(app.gql(Some(&clinic.provider_token), list, json!({})).await).len(),
        2
    );
    let spying = app
        .gql(
            Some(&olga),
            "query($p: UUID!) { appointments(filter: { patientId: $p }) { edges { cursor } } }",
            json!({ "p": clinic.patient }),
        )
        .await;
    assert_eq!(spying.code(), "FORBIDDEN");

    // The provider now sees their patient; a patient may not mark arrivals, nor touch others' visits.
    assert_eq!(
        app.gql(
            Some(&clinic.provider_token),
            "query($id: UUID!) { patient(id: $id) { name } }",
            json!({ "id": clinic.patient })
        )
        .await
        .data()["patient"]["name"],
        "Pat Patient"
    );
    assert_eq!(
        clinic
            .change(app, &clinic.patient_token, "markArrived", &mine)
            .await
            .code(),
        "FORBIDDEN"
    );
    assert_eq!(
        clinic.change(app, &olga, "cancelAppointment", &mine).await.code(),
        "NOT_FOUND"
    );
    assert_eq!(
        clinic
            .change(app, &clinic.provider_token, "cancelAppointment", &mine)
            .await
            .code(),
        "FORBIDDEN"
    );
    let stranger_provider = app
        .create_provider(&clinic.admin, "Dr. Else", "else@clinic.test", &[&clinic.location])
        .await;
    assert!(!stranger_provider.is_empty());
    let else_token = app.login("else@clinic.test", "provider pass 1234").await;
    assert_eq!(
        clinic.change(app, &else_token, "markArrived", &mine).await.code(),
        "NOT_FOUND"
    );
}

async fn appointment_lists_page_and_batch_their_lookups(app: &TestApp) {
    let clinic = Clinic::open(app).await;
    for hour in 14..22 {
        let patient = app
            .create_patient(
                &clinic.staff,
                json!({ "name": format!("Patient {hour}"), "birthDate": "1970-01-01" }),
            )
            .await;
        clinic
            .book(
                app,
                &clinic.staff,
                &patient,
                &format!("2026-11-26T{hour}:00:00Z"),
                json!({}),
            )
            .await
            .data();
    }
    let query = "query($after: String, $n: Int) { appointments(filter: { providerId: null }, first: $n, after: $after) { edges { node { start provider { name } patient { name } appointmentType { name } } } pageInfo { hasNextPage endCursor } } }";
    let mut starts = Vec::new();
    let mut after = Value::Null;
    loop {
        let page = app
            .gql(Some(&clinic.staff), query, json!({ "after": after, "n": 3 }))
            .await;
        let conn = &page.data()["appointments"];
        starts.extend(
            conn["edges"]
                .as_array()
                .expect("edges")
                .iter()
                .map(|e| e["node"]["start"].as_str().expect("start").to_owned()),
        );
        if conn["pageInfo"]["hasNextPage"] == false {
            break;
        }
        after = conn["pageInfo"]["endCursor"].clone();
    }
    let expected: Vec<String> = (14..22).map(|h| at(&format!("2026-11-26T{h}:00:00Z"))).collect();
    assert_eq!(starts, expected);

    // No N+1: eight appointments cost the same statements as two.
    let count = |n: i64| {
        let token = clinic.staff.clone();
        async move {
            let before = app.statements.load(std::sync::atomic::Ordering::SeqCst);
            app.gql(Some(&token), query, json!({ "n": n })).await.data();
            app.statements.load(std::sync::atomic::Ordering::SeqCst) - before
        }
    };
    let two = count(2).await;
    let eight = count(8).await;
    assert_eq!(two, eight, "statements for 2 and 8 appointments");
    assert!(eight <= 8, "a page costs {eight} statements");
}

async fn events_follow_commits_only(app: &TestApp) {
    let clinic = Clinic::open(app).await;
    let mut events = app.app.services.bus.subscribe();
    let booked = clinic
        .book(app, &clinic.patient_token, &clinic.patient, THU_10, json!({}))
        .await;
    let id = booked.data()["bookAppointment"]["id"].as_str().expect("id").to_owned();
    let mut seen = Vec::new();
    while let Ok(event) = events.try_recv() {
        seen.push(event);
    }
    assert!(
        matches!(seen.as_slice(), [slot, appointment]
        if matches!(slot.as_ref(), DomainEvent::Slot(s) if s.reason == domain::events::SlotChangeReason::Booked && s.start.to_rfc3339() == at(THU_10))
        && matches!(appointment.as_ref(), DomainEvent::Appointment(a) if a.appointment_id.to_string() == id)),
        "{seen:?}"
    );
    // A refused booking publishes nothing.
    assert_eq!(
        clinic
            .book(app, &clinic.staff, &clinic.patient, THU_10, json!({}))
            .await
            .code(),
        "SLOT_UNAVAILABLE"
    );
    assert!(events.try_recv().is_err());
    clinic.change(app, &clinic.staff, "cancelAppointment", &id).await.data();
    let released = events.try_recv().expect("an event");
    assert!(
        matches!(released.as_ref(), DomainEvent::Slot(s) if s.reason == domain::events::SlotChangeReason::Released)
    );
}

async fn bookings_in_a_dst_gap_are_refused(app: &TestApp) {
    let clinic = Clinic::open(app).await;
    // 2027-03-14 02:00 EST jumps to 03:00 EDT in New York: a Sunday rule of 02:00-02:45 never happens that day.
    clinic
        .set_rules(
            app,
            &clinic.provider,
            json!([{ "weekday": 7, "startTime": "02:00", "endTime": "02:45" }]),
        )
        .await
        .data();
    let gap = clinic
        .book(
            app,
            &clinic.staff,
            &clinic.patient,
            "2027-03-14T02:15:00-05:00",
            json!({}),
        )
        .await;
    assert_eq!(gap.code(), "SLOT_UNAVAILABLE");
    let next_week = clinic
        .slots(
            app,
            &clinic.staff,
            Some(&clinic.provider),
            &clinic.checkup,
            "2027-03-21T00:00:00Z",
            "2027-03-22T00:00:00Z",
        )
        .await;
    assert_eq!(
        next_week.len(),
        1,
        "a normal Sunday has the 02:00 slot (45 minutes hold one 30-minute visit)"
    );
    let dst_day = clinic
        .slots(
            app,
            &clinic.staff,
            Some(&clinic.provider),
            &clinic.checkup,
            "2027-03-14T00:00:00Z",
            "2027-03-15T00:00:00Z",
        )
        .await;
    assert!(dst_day.is_empty());
}

/// A refused crowd is answered from the instance's note of the winner; anything
/// that frees the provider's time (a cancellation, a move) must end that at once.
async fn a_freed_interval_can_be_booked_again_at_once(app: &TestApp) {
    let clinic = Clinic::open(app).await;
    let other = app
        .create_patient(&clinic.staff, json!({ "name": "Other", "birthDate": "1970-01-01" }))
        .await;
    let first = clinic
        .book(app, &clinic.staff, &clinic.patient, THU_10, json!({}))
        .await;
    let first = first.data()["bookAppointment"]["id"].as_str().expect("id").to_owned();
    let refused = clinic.book(app, &clinic.staff, &other, THU_10, json!({})).await;
    assert_eq!(refused.code(), "SLOT_UNAVAILABLE");

    let cancelled = app
        .gql(
            Some(&clinic.staff),
            "mutation($id: UUID!) { cancelAppointment(id: $id) { status } }",
            json!({ "id": first }),
        )
        .await;
    assert_eq!(cancelled.data()["cancelAppointment"]["status"], "CANCELLED");
    let again = clinic.book(app, &clinic.staff, &other, THU_10, json!({})).await;
    assert_eq!(
        again.data()["bookAppointment"]["start"],
        at(THU_10),
        "a cancellation frees it at once"
    );
    let again = again.data()["bookAppointment"]["id"].as_str().expect("id").to_owned();

    let moved = app
        .gql(
            Some(&clinic.staff),
            "mutation($id: UUID!, $s: DateTime!) { rescheduleAppointment(id: $id, start: $s) { start } }",
            json!({ "id": again, "s": "2026-11-26T16:00:00Z" }),
        )
        .await;
    assert_eq!(
        moved.data()["rescheduleAppointment"]["start"],
        at("2026-11-26T16:00:00Z")
    );
    let back = clinic
        .book(app, &clinic.staff, &clinic.patient, THU_10, json!({}))
        .await;
    assert_eq!(
        back.data()["bookAppointment"]["start"],
        at(THU_10),
        "a move frees the old interval at once"
    );
}

/// Reads of what occupies a window look for starts no earlier than the
/// longest appointment before it (480 minutes): the longest appointment, one
/// that started long before the window, is still found by the list, the slot
/// search and the booking check, and nothing longer can exist.
async fn the_longest_appointments_are_found_from_inside_them(app: &TestApp) {
    let clinic = Clinic::open(app).await;
    let create = "mutation($i: CreateAppointmentTypeInput!) { createAppointmentType(input: $i) { id } }";
    let too_long = app
        .gql(
            Some(&clinic.staff),
            create,
            json!({ "i": { "name": "Too long", "durationMinutes": 481, "locationId": clinic.location } }),
        )
        .await;
    assert_eq!(
        (too_long.code(), too_long.field()),
        ("BAD_USER_INPUT", Some("input.durationMinutes"))
    );
    let surgery = app
        .create_appointment_type(&clinic.staff, &clinic.location, "Surgery", 480)
        .await;
    // 09:00-17:00 in New York: the provider's whole Thursday.
    let booked = app
        .gql(
            Some(&clinic.staff),
            "mutation($i: BookAppointmentInput!) { bookAppointment(input: $i) { id start end } }",
            json!({ "i": { "providerId": clinic.provider, "patientId": clinic.patient, "appointmentTypeId": surgery, "start": "2026-11-26T14:00:00Z" } }),
        )
        .await;
    let id = booked.data()["bookAppointment"]["id"]
        .as_str()
        .expect("booked")
        .to_owned();
    assert_eq!(booked.data()["bookAppointment"]["end"], at("2026-11-26T22:00:00Z"));

    // A window opening in its last minute still finds it.
    let listed = app
        .gql(
            Some(&clinic.staff),
            "query($p: UUID, $f: DateTime, $t: DateTime) { appointments(filter: { providerId: $p, from: $f, to: $t }) { edges { node { id } } } }",
            json!({ "p": clinic.provider, "f": "2026-11-26T21:59:00Z", "t": "2026-11-26T23:00:00Z" }),
        )
        .await;
    assert_eq!(
        listed.data()["appointments"]["edges"],
        json!([{ "node": { "id": id } }]),
        "the window from 16:59 overlaps the surgery"
    );
    // Its last half hour is neither offered nor bookable.
    assert!(clinic.thursday(app, &clinic.patient_token).await.is_empty());
    let late = clinic
        .book(app, &clinic.staff, &clinic.patient, "2026-11-26T21:30:00Z", json!({}))
        .await;
    assert_eq!(late.code(), "SLOT_UNAVAILABLE");

    if app.backend == careslot_tests::Backend::Postgres {
        // The database itself refuses a longer appointment or hold.
        use sea_orm::ConnectionTrait;
        let db = &app.app.services.db;
        let stretched = db
            .execute_unprepared(&format!(
                "UPDATE appointments SET end_at = start_at + interval '481 minutes' WHERE id = '{id}'"
            ))
            .await
            .expect_err("a 481-minute appointment is refused");
        assert!(
            stretched.to_string().contains("appointments_length_bound"),
            "{stretched}"
        );
        let longer = db
            .execute_unprepared(&format!(
                "INSERT INTO holds (id, provider_id, location_id, appointment_type_id, start_at, end_at, expires_at, held_by, created_at) \
                 SELECT gen_random_uuid(), provider_id, location_id, appointment_type_id, start_at, \
                 start_at + interval '481 minutes', now(), created_by, now() FROM appointments WHERE id = '{id}'"
            ))
            .await
            .expect_err("a 481-minute hold is refused");
        assert!(longer.to_string().contains("holds_length_bound"), "{longer}");
    }
}

on_both_databases!(
    slots_follow_the_weekly_rules,
    rules_are_validated,
    booking_takes_the_slot_and_bad_input_writes_nothing,
    holds_block_others_and_expire_by_the_clock,
    idempotent_retries_return_the_first_booking,
    the_status_workflow,
    patients_keep_to_the_notice_window_and_staff_overrides_are_recorded,
    rescheduling_moves_in_place_and_keeps_history,
    who_may_see_and_book_what,
    appointment_lists_page_and_batch_their_lookups,
    events_follow_commits_only,
    bookings_in_a_dst_gap_are_refused,
    a_freed_interval_can_be_booked_again_at_once,
    the_longest_appointments_are_found_from_inside_them,
);
