//! Locations, providers, patients and appointment types through the real router,
//! on SQLite and PostgreSQL: happy paths, role checks, bad input.

use careslot_tests::{TestApp, on_both_databases};
use serde_json::{Value, json};
use std::collections::HashSet;

async fn locations_validate_time_zones_and_roles(app: &TestApp) {
    let admin = app.admin().await;
    let id = app.create_location(&admin, "Downtown", "America/New_York").await;
    let list = app
        .gql(Some(&admin), "{ locations { id name timeZone } }", json!({}))
        .await;
    assert_eq!(
        list.data()["locations"],
        json!([{ "id": id, "name": "Downtown", "timeZone": "America/New_York" }])
    );

    let create = "mutation($i: CreateLocationInput!) { createLocation(input: $i) { id } }";
    let bad_zone = app
        .gql(
            Some(&admin),
            create,
            json!({ "i": { "name": "X", "timeZone": "Mars/Olympus" } }),
        )
        .await;
    assert_eq!(
        (bad_zone.code(), bad_zone.field()),
        ("BAD_USER_INPUT", Some("input.timeZone"))
    );
    let empty_name = app
        .gql(
            Some(&admin),
            create,
            json!({ "i": { "name": "  ", "timeZone": "UTC" } }),
        )
        .await;
    assert_eq!(
        (empty_name.code(), empty_name.field()),
        ("BAD_USER_INPUT", Some("input.name"))
    );
    let missing_field = app.gql(Some(&admin), create, json!({ "i": { "name": "X" } })).await;
    assert_eq!(missing_field.code(), "BAD_USER_INPUT");

    let staff = app.staff(&admin, "desk@clinic.test", &[]).await;
    let by_staff = app
        .gql(Some(&staff), create, json!({ "i": { "name": "X", "timeZone": "UTC" } }))
        .await;
    assert_eq!(by_staff.code(), "FORBIDDEN");
    let anonymous = app
        .gql(None, create, json!({ "i": { "name": "X", "timeZone": "UTC" } }))
        .await;
    assert_eq!(anonymous.code(), "UNAUTHENTICATED");
    assert_eq!(
        app.gql(None, "{ locations { id } }", json!({})).await.code(),
        "UNAUTHENTICATED"
    );
}

async fn providers_sign_in_and_validate_input(app: &TestApp) {
    let admin = app.admin().await;
    let east = app.create_location(&admin, "East", "America/New_York").await;
    let west = app.create_location(&admin, "West", "America/Los_Angeles").await;
    let provider = app
        .create_provider(&admin, "Dr. Grey", "grey@clinic.test", &[&east, &west])
        .await;

    let token = app.login("grey@clinic.test", "provider pass 1234").await;
    let me = app.gql(Some(&token), "{ me { role providerId } }", json!({})).await;
    assert_eq!(me.data()["me"], json!({ "role": "PROVIDER", "providerId": provider }));

    let read = app
        .gql(
            Some(&token),
            "query($id: UUID!) { provider(id: $id) { name locationIds } }",
            json!({ "id": provider }),
        )
        .await;
    let mut expected = vec![east.clone(), west.clone()];
    expected.sort();
    assert_eq!(
        read.data()["provider"],
        json!({ "name": "Dr. Grey", "locationIds": expected })
    );
    let missing = app
        .gql(
            Some(&token),
            "query($id: UUID!) { provider(id: $id) { name } }",
            json!({ "id": uuid::Uuid::new_v4() }),
        )
        .await;
    assert_eq!(missing.data()["provider"], Value::Null);

    let create = "mutation($i: CreateProviderInput!) { createProvider(input: $i) { id } }";
    let input = |email: &str, locations: Value| json!({ "i": { "name": "Dr. Who", "email": email, "password": "provider pass 1234", "locationIds": locations } });
    let duplicate = app
        .gql(Some(&admin), create, input("GREY@clinic.test", json!([east])))
        .await;
    assert_eq!(
        (duplicate.code(), duplicate.field()),
        ("BAD_USER_INPUT", Some("input.email"))
    );
    let unknown = app
        .gql(
            Some(&admin),
            create,
            input("who@clinic.test", json!([uuid::Uuid::new_v4()])),
        )
        .await;
    assert_eq!(
        (unknown.code(), unknown.field()),
        ("BAD_USER_INPUT", Some("input.locationIds"))
    );
    let none = app.gql(Some(&admin), create, input("who@clinic.test", json!([]))).await;
    assert_eq!(
        (none.code(), none.field()),
        ("BAD_USER_INPUT", Some("input.locationIds"))
    );
    let malformed = app
        .gql(Some(&admin), create, input("who@clinic.test", json!(["not-a-uuid"])))
        .await;
    assert_eq!(malformed.code(), "BAD_USER_INPUT");
    let by_provider = app
        .gql(Some(&token), create, input("who@clinic.test", json!([east])))
        .await;
    assert_eq!(by_provider.code(), "FORBIDDEN");
    // A refused creation wrote nothing: the email is still free.
    app.create_provider(&admin, "Dr. Who", "who@clinic.test", &[&east])
        .await;
}

async fn providers_page_by_name_with_cursors(app: &TestApp) {
    let admin = app.admin().await;
    let here = app.create_location(&admin, "Here", "Europe/London").await;
    let there = app.create_location(&admin, "There", "Europe/London").await;
    for (i, name) in ["Dr. E", "Dr. A", "Dr. D", "Dr. B", "Dr. C"].iter().enumerate() {
        let location = if i % 2 == 0 { &here } else { &there };
        app.create_provider(&admin, name, &format!("p{i}@clinic.test"), &[location])
            .await;
    }
    let query = "query($l: UUID, $after: String) { providers(locationId: $l, first: 2, after: $after) { edges { cursor node { name } } pageInfo { hasNextPage endCursor } } }";
    let mut names = Vec::new();
    let mut after = Value::Null;
    for _ in 0..5 {
        let page = app.gql(Some(&admin), query, json!({ "after": after })).await;
        let conn = &page.data()["providers"];
        names.extend(
            conn["edges"]
                .as_array()
                .expect("edges")
                .iter()
                .map(|e| e["node"]["name"].as_str().expect("name").to_owned()),
        );
        if conn["pageInfo"]["hasNextPage"] == false {
            break;
        }
        after = conn["pageInfo"]["endCursor"].clone();
    }
    assert_eq!(names, ["Dr. A", "Dr. B", "Dr. C", "Dr. D", "Dr. E"]);

    let at_here = app
        .gql(
            Some(&admin),
            "query($l: UUID) { providers(locationId: $l) { edges { node { name } } } }",
            json!({ "l": here }),
        )
        .await;
    let here_names: Vec<&str> = at_here.data()["providers"]["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|e| e["node"]["name"].as_str().expect("name"))
        .collect();
    assert_eq!(here_names, ["Dr. C", "Dr. D", "Dr. E"]);

    let bad_cursor = app.gql(Some(&admin), query, json!({ "after": "!!!" })).await;
    assert_eq!(
        (bad_cursor.code(), bad_cursor.field()),
        ("BAD_USER_INPUT", Some("after"))
    );
    let too_many = app
        .gql(
            Some(&admin),
            "{ providers(first: 1000) { edges { cursor } } }",
            json!({}),
        )
        .await;
    assert_eq!((too_many.code(), too_many.field()), ("BAD_USER_INPUT", Some("first")));
}

const PATIENT: &str = "query($id: UUID!) { patient(id: $id) { id name birthDate email phone } }";

async fn patients_are_visible_only_to_who_may_see_them(app: &TestApp) {
    let admin = app.admin().await;
    let desk = app.create_location(&admin, "Front", "UTC").await;
    let staff = app.staff(&admin, "desk@clinic.test", &[&desk]).await;
    let ada = app
        .create_patient(&staff, json!({ "name": "Ada Lovelace", "birthDate": "1985-12-10", "email": "Ada@Example.org", "phone": "+44 20 7946 0000", "password": "analytical engine" }))
        .await;
    let bob = app
        .create_patient(&staff, json!({ "name": "Bob Byron", "birthDate": "1990-01-01" }))
        .await;

    let by_staff = app.gql(Some(&staff), PATIENT, json!({ "id": ada })).await;
    assert_eq!(
        by_staff.data()["patient"],
        json!({ "id": ada, "name": "Ada Lovelace", "birthDate": "1985-12-10", "email": "ada@example.org", "phone": "+442079460000" })
    );

    let ada_token = app.login("ada@example.org", "analytical engine").await;
    assert_eq!(
        app.gql(Some(&ada_token), "{ me { role patientId } }", json!({}))
            .await
            .data()["me"],
        json!({ "role": "PATIENT", "patientId": ada })
    );
    assert_eq!(
        app.gql(Some(&ada_token), PATIENT, json!({ "id": ada })).await.data()["patient"]["name"],
        "Ada Lovelace"
    );
    // Another patient's record, or one that does not exist, is simply null.
    assert_eq!(
        app.gql(Some(&ada_token), PATIENT, json!({ "id": bob })).await.data()["patient"],
        Value::Null
    );
    assert_eq!(
        app.gql(Some(&staff), PATIENT, json!({ "id": uuid::Uuid::new_v4() }))
            .await
            .data()["patient"],
        Value::Null
    );
    assert_eq!(
        app.gql(Some(&ada_token), "{ patients { edges { cursor } } }", json!({}))
            .await
            .code(),
        "FORBIDDEN"
    );

    // A provider sees no patient they have no appointment with.
    let location = app.create_location(&admin, "Clinic", "UTC").await;
    app.create_provider(&admin, "Dr. Grey", "grey@clinic.test", &[&location])
        .await;
    let grey = app.login("grey@clinic.test", "provider pass 1234").await;
    assert_eq!(
        app.gql(Some(&grey), PATIENT, json!({ "id": ada })).await.data()["patient"],
        Value::Null
    );
    let grey_list = app
        .gql(Some(&grey), "{ patients { edges { cursor } } }", json!({}))
        .await;
    assert_eq!(grey_list.data()["patients"]["edges"], json!([]));

    let malformed = app.gql(Some(&staff), PATIENT, json!({ "id": "1234" })).await;
    assert_eq!(malformed.code(), "BAD_USER_INPUT");
    let inline_malformed = app
        .gql(Some(&staff), "{ patient(id: \"nope\") { id } }", json!({}))
        .await;
    assert_eq!(inline_malformed.code(), "BAD_USER_INPUT");
}

async fn patient_input_is_validated_and_nothing_half_written(app: &TestApp) {
    let admin = app.admin().await;
    let create = "mutation($i: CreatePatientInput!) { createPatient(input: $i) { id } }";
    for (input, field) in [
        (json!({ "name": "", "birthDate": "1990-01-01" }), "input.name"),
        (json!({ "name": "A", "birthDate": "2999-01-01" }), "input.birthDate"),
        (
            json!({ "name": "A", "birthDate": "1990-01-01", "email": "nope" }),
            "input.email",
        ),
        (
            json!({ "name": "A", "birthDate": "1990-01-01", "phone": "12" }),
            "input.phone",
        ),
        (
            json!({ "name": "A", "birthDate": "1990-01-01", "password": "long enough password" }),
            "input.email",
        ),
        (
            json!({ "name": "A", "birthDate": "1990-01-01", "email": "a@b.org", "password": "short" }),
            "input.password",
        ),
    ] {
        let response = app.gql(Some(&admin), create, json!({ "i": input })).await;
        assert_eq!(
            (response.code(), response.field()),
            ("BAD_USER_INPUT", Some(field)),
            "{input}"
        );
    }
    let bad_date = app
        .gql(
            Some(&admin),
            create,
            json!({ "i": { "name": "A", "birthDate": "1990-13-45" } }),
        )
        .await;
    assert_eq!(bad_date.code(), "BAD_USER_INPUT");

    // A sign-in whose email is taken rolls the whole patient back.
    app.create_patient(&admin, json!({ "name": "First", "birthDate": "1990-01-01", "email": "same@x.org", "password": "long enough password" })).await;
    let dup = app
        .gql(Some(&admin), create, json!({ "i": { "name": "Second", "birthDate": "1990-01-01", "email": "same@x.org", "password": "long enough password" } }))
        .await;
    assert_eq!((dup.code(), dup.field()), ("BAD_USER_INPUT", Some("input.email")));
    let all = app
        .gql(
            Some(&admin),
            "{ patients(first: 100) { edges { node { name } } } }",
            json!({}),
        )
        .await;
    let names: Vec<&str> = all.data()["patients"]["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|e| e["node"]["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["First"]);
}

async fn patients_are_searched_without_decrypting(app: &TestApp) {
    let admin = app.admin().await;
    let ada = app.create_patient(&admin, json!({ "name": "Ada King Lovelace", "birthDate": "1985-12-10", "email": "ada@example.org", "phone": "+15551230001" })).await;
    let anne = app
        .create_patient(&admin, json!({ "name": "Anne King", "birthDate": "1986-01-01" }))
        .await;
    app.create_patient(&admin, json!({ "name": "Charles Babbage", "birthDate": "1961-12-26" }))
        .await;
    let search = |term: &'static str| {
        let admin = admin.clone();
        async move {
            let page = app
                .gql(
                    Some(&admin),
                    "query($s: String) { patients(search: $s) { edges { node { id } } } }",
                    json!({ "s": term }),
                )
                .await;
            page.data()["patients"]["edges"]
                .as_array()
                .expect("edges")
                .iter()
                .map(|e| e["node"]["id"].as_str().expect("id").to_owned())
                .collect::<HashSet<_>>()
        }
    };
    assert_eq!(search("king").await, HashSet::from([ada.clone(), anne.clone()]));
    assert_eq!(search("LOVELACE ada").await, HashSet::from([ada.clone()]));
    assert_eq!(search("ADA@example.org").await, HashSet::from([ada.clone()]));
    assert_eq!(search("+1 555 123 0001").await, HashSet::from([ada.clone()]));
    assert!(search("lovelace babbage").await.is_empty());
    assert_eq!(search("").await.len(), 3);
}

async fn patients_update_their_own_record(app: &TestApp) {
    let admin = app.admin().await;
    let ada = app.create_patient(&admin, json!({ "name": "Ada", "birthDate": "1985-12-10", "email": "ada@example.org", "phone": "+15551230001", "password": "analytical engine" })).await;
    let bob = app
        .create_patient(&admin, json!({ "name": "Bob", "birthDate": "1990-01-01" }))
        .await;
    let token = app.login("ada@example.org", "analytical engine").await;
    let update = "mutation($id: UUID!, $i: UpdatePatientInput!) { updatePatient(id: $id, input: $i) { name email phone birthDate } }";
    let own = app
        .gql(
            Some(&token),
            update,
            json!({ "id": ada, "i": { "name": "Ada Lovelace", "phone": null } }),
        )
        .await;
    assert_eq!(
        own.data()["updatePatient"],
        json!({ "name": "Ada Lovelace", "email": "ada@example.org", "phone": null, "birthDate": "1985-12-10" })
    );
    // The name index follows the change.
    let found = app
        .gql(
            Some(&admin),
            "{ patients(search: \"lovelace\") { edges { node { id } } } }",
            json!({}),
        )
        .await;
    assert_eq!(found.data()["patients"]["edges"][0]["node"]["id"], ada);

    let other = app
        .gql(Some(&token), update, json!({ "id": bob, "i": { "name": "Hacked" } }))
        .await;
    assert_eq!(other.code(), "NOT_FOUND");
    let missing = app
        .gql(
            Some(&admin),
            update,
            json!({ "id": uuid::Uuid::new_v4(), "i": { "name": "X" } }),
        )
        .await;
    assert_eq!(missing.code(), "NOT_FOUND");
    let bad = app
        .gql(
            Some(&admin),
            update,
            json!({ "id": bob, "i": { "email": "no-at-sign" } }),
        )
        .await;
    assert_eq!((bad.code(), bad.field()), ("BAD_USER_INPUT", Some("input.email")));
    assert_eq!(
        app.gql(Some(&admin), PATIENT, json!({ "id": bob })).await.data()["patient"]["name"],
        "Bob"
    );

    // Reminder channels: both on by default, each switched off by the patient.
    let channels = "query($id: UUID!) { patient(id: $id) { notifyByEmail notifyBySms } }";
    assert_eq!(
        app.gql(Some(&token), channels, json!({ "id": ada })).await.data()["patient"],
        json!({ "notifyByEmail": true, "notifyBySms": true })
    );
    let opted_out = app
        .gql(
            Some(&token),
            "mutation($id: UUID!) { updatePatient(id: $id, input: { notifyBySms: false }) { notifyByEmail notifyBySms } }",
            json!({ "id": ada }),
        )
        .await;
    assert_eq!(
        opted_out.data()["updatePatient"],
        json!({ "notifyByEmail": true, "notifyBySms": false })
    );
    assert_eq!(
        app.gql(Some(&token), channels, json!({ "id": ada })).await.data()["patient"]["notifyBySms"],
        false
    );
}

async fn appointment_types_belong_to_locations(app: &TestApp) {
    let admin = app.admin().await;
    let here = app.create_location(&admin, "Here", "UTC").await;
    let there = app.create_location(&admin, "There", "UTC").await;
    let staff = app.staff(&admin, "desk@clinic.test", &[&here, &there]).await;
    let checkup = app.create_appointment_type(&staff, &here, "Checkup", 30).await;
    app.create_appointment_type(&staff, &there, "Consult", 45).await;
    let list = app
        .gql(
            Some(&staff),
            "query($l: UUID) { appointmentTypes(locationId: $l) { id name durationMinutes locationId } }",
            json!({ "l": here }),
        )
        .await;
    assert_eq!(
        list.data()["appointmentTypes"],
        json!([{ "id": checkup, "name": "Checkup", "durationMinutes": 30, "locationId": here }])
    );
    let all = app.gql(Some(&staff), "{ appointmentTypes { id } }", json!({})).await;
    assert_eq!(all.data()["appointmentTypes"].as_array().expect("list").len(), 2);

    let create = "mutation($i: CreateAppointmentTypeInput!) { createAppointmentType(input: $i) { id } }";
    let zero = app
        .gql(
            Some(&staff),
            create,
            json!({ "i": { "name": "X", "durationMinutes": 0, "locationId": here } }),
        )
        .await;
    assert_eq!(
        (zero.code(), zero.field()),
        ("BAD_USER_INPUT", Some("input.durationMinutes"))
    );
    let nowhere = app
        .gql(
            Some(&admin),
            create,
            json!({ "i": { "name": "X", "durationMinutes": 30, "locationId": uuid::Uuid::new_v4() } }),
        )
        .await;
    assert_eq!(
        (nowhere.code(), nowhere.field()),
        ("BAD_USER_INPUT", Some("input.locationId"))
    );
    // STAFF create types only where they work.
    let elsewhere = app.create_location(&admin, "Elsewhere", "UTC").await;
    let not_theirs = app
        .gql(
            Some(&staff),
            create,
            json!({ "i": { "name": "X", "durationMinutes": 30, "locationId": elsewhere } }),
        )
        .await;
    assert_eq!(not_theirs.code(), "FORBIDDEN");
    let patient = app
        .create_patient(
            &admin,
            json!({ "name": "P", "birthDate": "1990-01-01", "email": "p@x.org", "password": "long enough password" }),
        )
        .await;
    assert!(!patient.is_empty());
    let patient_token = app.login("p@x.org", "long enough password").await;
    let by_patient = app
        .gql(
            Some(&patient_token),
            create,
            json!({ "i": { "name": "X", "durationMinutes": 30, "locationId": here } }),
        )
        .await;
    assert_eq!(by_patient.code(), "FORBIDDEN");
}

on_both_databases!(
    locations_validate_time_zones_and_roles,
    providers_sign_in_and_validate_input,
    providers_page_by_name_with_cursors,
    patients_are_visible_only_to_who_may_see_them,
    patient_input_is_validated_and_nothing_half_written,
    patients_are_searched_without_decrypting,
    patients_update_their_own_record,
    appointment_types_belong_to_locations,
);
