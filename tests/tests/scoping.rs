//! STAFF are scoped to the locations they work at: a front desk sees and
//! changes the appointments, patients and calendars of its own locations only.
//! Ending sessions (sign-out, an administrator, a change of locations) refuses
//! the session's access tokens at once.

use careslot_tests::clinic::Clinic;
use careslot_tests::{TestApp, on_both_databases};
use serde_json::json;

const PATIENT: &str = "query($id: UUID!) { patient(id: $id) { id name } }";
const SEARCH: &str = "query($s: String) { patients(search: $s) { edges { node { id } } } }";
const APPOINTMENTS: &str = "{ appointments(filter: {}) { edges { node { id locationId } } } }";
const CREATE_PATIENT: &str = "mutation($i: CreatePatientInput!) { createPatient(input: $i) { id } }";
const SET_LOCATIONS: &str =
    "mutation($u: UUID!, $l: [UUID!]!) { setStaffLocations(userId: $u, locationIds: $l) { id role locationIds } }";

fn ids(response: &careslot_tests::Gql, path: &str) -> Vec<String> {
    response.data()[path]["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|e| e["node"]["id"].as_str().expect("id").to_owned())
        .collect()
}

async fn staff_see_and_change_only_their_locations(app: &TestApp) {
    let clinic = Clinic::open(app).await;
    let uptown = app.create_location(&clinic.admin, "Uptown", "America/New_York").await;
    let far = app.staff(&clinic.admin, "far@clinic.test", &[&uptown]).await;
    let booked = clinic
        .book(app, &clinic.staff, &clinic.patient, "2026-11-30T15:00:00Z", json!({}))
        .await;
    let appointment = booked.data()["bookAppointment"]["id"].as_str().expect("id").to_owned();

    // Main Street's desk sees its patient and appointment; Uptown's does not.
    let mine = app
        .gql(Some(&clinic.staff), PATIENT, json!({ "id": clinic.patient }))
        .await;
    assert_eq!(mine.data()["patient"]["id"], clinic.patient.as_str());
    let theirs = app.gql(Some(&far), PATIENT, json!({ "id": clinic.patient })).await;
    assert!(theirs.data()["patient"].is_null(), "{:?}", theirs.0);
    assert_eq!(
        ids(
            &app.gql(Some(&clinic.staff), SEARCH, json!({ "s": "Pat Patient" }))
                .await,
            "patients"
        ),
        vec![clinic.patient.clone()]
    );
    assert!(
        ids(
            &app.gql(Some(&far), SEARCH, json!({ "s": "Pat Patient" })).await,
            "patients"
        )
        .is_empty()
    );
    assert!(ids(&app.gql(Some(&far), SEARCH, json!({})).await, "patients").is_empty());
    assert_eq!(
        ids(
            &app.gql(Some(&clinic.staff), APPOINTMENTS, json!({})).await,
            "appointments"
        ),
        vec![appointment.clone()]
    );
    assert!(ids(&app.gql(Some(&far), APPOINTMENTS, json!({})).await, "appointments").is_empty());
    let cancel = app
        .gql(
            Some(&far),
            "mutation($id: UUID!) { cancelAppointment(id: $id) { id } }",
            json!({ "id": appointment }),
        )
        .await;
    assert_eq!(cancel.code(), "NOT_FOUND");
    let update = app
        .gql(
            Some(&far),
            "mutation($id: UUID!) { updatePatient(id: $id, input: { name: \"Renamed\" }) { id } }",
            json!({ "id": clinic.patient }),
        )
        .await;
    assert_eq!(update.code(), "NOT_FOUND");
    let book_there = clinic
        .book(app, &far, &clinic.patient, "2026-11-30T16:00:00Z", json!({}))
        .await;
    assert_eq!(
        book_there.code(),
        "FORBIDDEN",
        "Main Street's calendar is not Uptown's to fill"
    );

    // Uptown's desk registers patients at Uptown; Main Street's desk does not see them.
    let walk_in = app
        .gql(
            Some(&far),
            CREATE_PATIENT,
            json!({ "i": { "name": "Wally Walkin", "birthDate": "1990-03-03" } }),
        )
        .await;
    let walk_in = walk_in.data()["createPatient"]["id"].as_str().expect("id").to_owned();
    assert!(
        app.gql(Some(&clinic.staff), PATIENT, json!({ "id": walk_in }))
            .await
            .data()["patient"]
            .is_null()
    );
    assert_eq!(
        app.gql(Some(&far), PATIENT, json!({ "id": walk_in })).await.data()["patient"]["id"],
        walk_in.as_str()
    );
    let elsewhere = app
        .gql(
            Some(&far),
            CREATE_PATIENT,
            json!({ "i": { "name": "X", "birthDate": "1990-03-03", "locationId": clinic.location } }),
        )
        .await;
    assert_eq!(elsewhere.code(), "FORBIDDEN");

    // Once the patient has an appointment at Main Street, its desk sees them.
    app.gql(
        Some(&clinic.admin),
        "mutation($i: BookAppointmentInput!) { bookAppointment(input: $i) { id } }",
        json!({ "i": { "providerId": clinic.provider, "patientId": walk_in, "appointmentTypeId": clinic.checkup, "start": "2026-11-30T17:00:00Z" } }),
    )
    .await
    .data();
    assert_eq!(
        app.gql(Some(&clinic.staff), PATIENT, json!({ "id": walk_in }))
            .await
            .data()["patient"]["id"],
        walk_in.as_str()
    );

    // A desk at two locations says where a new patient registers.
    let both = app
        .staff(&clinic.admin, "both@clinic.test", &[&clinic.location, &uptown])
        .await;
    let unsaid = app
        .gql(
            Some(&both),
            CREATE_PATIENT,
            json!({ "i": { "name": "Y", "birthDate": "1990-03-03" } }),
        )
        .await;
    assert_eq!(
        (unsaid.code(), unsaid.field()),
        ("BAD_USER_INPUT", Some("input.locationId"))
    );
    let said = app
        .gql(
            Some(&both),
            CREATE_PATIENT,
            json!({ "i": { "name": "Y", "birthDate": "1990-03-03", "locationId": uptown } }),
        )
        .await;
    said.data();
    assert_eq!(
        ids(&app.gql(Some(&both), APPOINTMENTS, json!({})).await, "appointments").len(),
        2
    );
}

async fn moving_a_desk_ends_its_sessions_and_applies_the_new_scope(app: &TestApp) {
    let clinic = Clinic::open(app).await;
    let uptown = app.create_location(&clinic.admin, "Uptown", "UTC").await;
    let me = app
        .gql(Some(&clinic.staff), "{ me { id locationIds } }", json!({}))
        .await;
    assert_eq!(me.data()["me"]["locationIds"], json!([clinic.location]));
    let user = me.data()["me"]["id"].clone();

    let unknown = app
        .gql(
            Some(&clinic.admin),
            SET_LOCATIONS,
            json!({ "u": user, "l": [uuid::Uuid::new_v4()] }),
        )
        .await;
    assert_eq!(
        (unknown.code(), unknown.field()),
        ("BAD_USER_INPUT", Some("locationIds"))
    );
    let admin_id = app.gql(Some(&clinic.admin), "{ me { id } }", json!({})).await.data()["me"]["id"].clone();
    let not_staff = app
        .gql(
            Some(&clinic.admin),
            SET_LOCATIONS,
            json!({ "u": admin_id, "l": [uptown] }),
        )
        .await;
    assert_eq!(not_staff.code(), "BAD_USER_INPUT");
    let by_staff = app
        .gql(Some(&clinic.staff), SET_LOCATIONS, json!({ "u": user, "l": [uptown] }))
        .await;
    assert_eq!(by_staff.code(), "FORBIDDEN");
    // A refused change ended nothing.
    app.gql(Some(&clinic.staff), "{ me { id } }", json!({})).await.data();

    let moved = app
        .gql(Some(&clinic.admin), SET_LOCATIONS, json!({ "u": user, "l": [uptown] }))
        .await;
    assert_eq!(moved.data()["setStaffLocations"]["locationIds"], json!([uptown]));
    let stale = app.gql(Some(&clinic.staff), "{ me { id } }", json!({})).await;
    assert_eq!(stale.code(), "UNAUTHENTICATED", "the old scope's token is refused");
    let fresh = app.login("desk@clinic.test", "staff password 1234").await;
    let main_street = app.gql(Some(&fresh), PATIENT, json!({ "id": clinic.patient })).await;
    assert!(
        main_street.data()["patient"].is_null(),
        "Main Street is no longer theirs"
    );
}

async fn sign_out_and_reuse_end_the_access_token_too(app: &TestApp) {
    let admin = app.admin().await;
    let login = "mutation { login(email: \"admin@clinic.test\", password: \"admin password 1234\") { accessToken refreshToken user { id } } }";
    let me = "{ me { id } }";

    let first = app.gql(None, login, json!({})).await;
    let access = first.data()["login"]["accessToken"].as_str().expect("token").to_owned();
    let refresh = first.data()["login"]["refreshToken"].clone();
    app.gql(Some(&access), me, json!({})).await.data();
    app.gql(
        None,
        "mutation($t: String!) { logout(refreshToken: $t) }",
        json!({ "t": refresh }),
    )
    .await
    .data();
    let refused = app.gql(Some(&access), me, json!({})).await;
    assert_eq!(
        (refused.code(), refused.message()),
        ("UNAUTHENTICATED", "session ended")
    );
    app.gql(Some(&admin), me, json!({})).await.data();

    // A stolen refresh token used twice ends the session: the thief's fresh
    // access token and the owner's both stop working.
    let second = app.gql(None, login, json!({})).await;
    let owner = second.data()["login"]["accessToken"]
        .as_str()
        .expect("token")
        .to_owned();
    let stolen = second.data()["login"]["refreshToken"].clone();
    let refresh = "mutation($t: String!) { refreshSession(refreshToken: $t) { accessToken } }";
    let thief = app.gql(None, refresh, json!({ "t": stolen })).await;
    let thief = thief.data()["refreshSession"]["accessToken"]
        .as_str()
        .expect("token")
        .to_owned();
    let replay = app.gql(None, refresh, json!({ "t": stolen })).await;
    assert_eq!(replay.code(), "UNAUTHENTICATED");
    assert_eq!(app.gql(Some(&thief), me, json!({})).await.code(), "UNAUTHENTICATED");
    assert_eq!(app.gql(Some(&owner), me, json!({})).await.code(), "UNAUTHENTICATED");

    // Signing out everywhere: a user may end their own sessions, not others'.
    let third = app.gql(None, login, json!({})).await;
    let token = third.data()["login"]["accessToken"].as_str().expect("token").to_owned();
    let user = third.data()["login"]["user"]["id"].clone();
    let ended = app
        .gql(
            Some(&token),
            "mutation($u: UUID!) { revokeUserSessions(userId: $u) }",
            json!({ "u": user }),
        )
        .await;
    assert!(
        ended.data()["revokeUserSessions"].as_i64().expect("count") >= 2,
        "{:?}",
        ended.0
    );
    assert_eq!(app.gql(Some(&admin), me, json!({})).await.code(), "UNAUTHENTICATED");
    let unknown = app
        .gql(
            Some(&app.admin().await),
            "mutation($u: UUID!) { revokeUserSessions(userId: $u) }",
            json!({ "u": uuid::Uuid::new_v4() }),
        )
        .await;
    assert_eq!(unknown.code(), "NOT_FOUND");
}

on_both_databases!(
    staff_see_and_change_only_their_locations,
    moving_a_desk_ends_its_sessions_and_applies_the_new_scope,
    sign_out_and_reuse_end_the_access_token_too,
);
