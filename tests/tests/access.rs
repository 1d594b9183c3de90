//! Access control, table-driven: every operation of the schema (Query,
//! Mutation, Subscription, read from the generated SDL) runs as every kind of
//! caller, including a patient and a provider acting on someone else's data,
//! and must answer exactly what its rule says. An operation with no rule here
//! fails the test, so nothing new ships without a decision about who may use it.

use async_graphql::Request;
use careslot_tests::clinic::Clinic;
use careslot_tests::{Backend, TestApp};
use domain::Caller;
use futures_util::StreamExt;
use schema::RequestCaller;
use serde_json::{Value, json};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Who {
    Anonymous,
    Admin,
    /// STAFF of the clinic's location.
    Staff,
    /// STAFF of another location.
    OtherStaff,
    /// The provider of the target appointment.
    Provider,
    /// Another provider.
    OtherProvider,
    /// The patient of the target appointment.
    Patient,
    /// Another patient.
    OtherPatient,
}

const EVERYONE: [Who; 8] = [
    Who::Anonymous,
    Who::Admin,
    Who::Staff,
    Who::OtherStaff,
    Who::Provider,
    Who::OtherProvider,
    Who::Patient,
    Who::OtherPatient,
];

/// What a call must answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// Passes the access check (the call may still fail its own rules, e.g. a
    /// status change at the wrong time, but not with an access code).
    Allowed,
    /// Answers null without an error (lookups of what the caller may not see).
    Null,
    /// Answers this code.
    Code(&'static str),
}

use Expect::{Allowed, Code, Null};
const UNAUTH: Expect = Code("UNAUTHENTICATED");
const FORBIDDEN: Expect = Code("FORBIDDEN");
const NOT_FOUND: Expect = Code("NOT_FOUND");

/// The rule of each operation.
fn rule(operation: &str, who: Who) -> Expect {
    use Who::*;
    let signed_in = |e: Expect| if who == Anonymous { UNAUTH } else { e };
    match operation {
        "login" | "refreshSession" | "logout" => Allowed,
        "me" | "locations" | "provider" | "providers" | "appointmentTypes" | "availableSlots" | "appointments"
        | "slotsChanged" => signed_in(Allowed),
        "patient" | "appointment" => signed_in(match who {
            OtherStaff | OtherProvider | OtherPatient => Null,
            _ => Allowed,
        }),
        "patients" => signed_in(match who {
            Patient | OtherPatient => FORBIDDEN,
            _ => Allowed,
        }),
        "createLocation" | "createProvider" | "createUser" | "deadLetters" | "auditEvents" | "setStaffLocations"
        | "revokeUserSessions" => signed_in(if who == Admin { Allowed } else { FORBIDDEN }),
        // Called with an id that is no job: an ADMIN passes the check and learns so.
        "retryJob" => signed_in(if who == Admin { NOT_FOUND } else { FORBIDDEN }),
        // Another location's STAFF registers the patient at their own location.
        "createPatient" => signed_in(if matches!(who, Admin | Staff | OtherStaff) {
            Allowed
        } else {
            FORBIDDEN
        }),
        "createAppointmentType" | "setWeeklyAvailability" | "addClosedDate" | "appointmentsChanged" => {
            signed_in(if matches!(who, Admin | Staff) {
                Allowed
            } else {
                FORBIDDEN
            })
        }
        "updatePatient" => signed_in(match who {
            Admin | Staff | Patient => Allowed,
            Provider => FORBIDDEN,
            _ => NOT_FOUND,
        }),
        "addTimeOff" => signed_in(match who {
            Admin | Staff | Provider => Allowed,
            _ => FORBIDDEN,
        }),
        "holdSlot" => signed_in(match who {
            OtherStaff | Provider | OtherProvider => FORBIDDEN,
            _ => Allowed,
        }),
        "releaseHold" => signed_in(match who {
            Admin | Staff | Patient => Allowed,
            _ => NOT_FOUND,
        }),
        "bookAppointment" => signed_in(match who {
            Admin | Staff | Patient => Allowed,
            _ => FORBIDDEN,
        }),
        "rescheduleAppointment" | "cancelAppointment" => signed_in(match who {
            Admin | Staff | Patient => Allowed,
            Provider => FORBIDDEN,
            _ => NOT_FOUND,
        }),
        "markArrived" | "checkInAppointment" | "completeAppointment" | "markNoShow" => signed_in(match who {
            Admin | Staff | Provider => Allowed,
            Patient => FORBIDDEN,
            _ => NOT_FOUND,
        }),
        other => panic!("operation {other} has no access rule in tests/tests/access.rs: decide who may use it"),
    }
}

struct Fixture {
    clinic: Clinic,
    other_staff_token: String,
    other_provider_token: String,
    other_patient_token: String,
    /// Ids of the target appointment's patient etc.
    appointment: String,
    next_hour: std::cell::Cell<u32>,
    /// Holds of the clinic's patient made for `releaseHold` calls.
    patient_holds: std::cell::RefCell<Vec<Value>>,
}

impl Fixture {
    fn token(&self, who: Who) -> Option<&str> {
        Some(match who {
            Who::Anonymous => return None,
            Who::Admin => &self.clinic.admin,
            Who::Staff => &self.clinic.staff,
            Who::OtherStaff => &self.other_staff_token,
            Who::Provider => &self.clinic.provider_token,
            Who::OtherProvider => &self.other_provider_token,
            Who::Patient => &self.clinic.patient_token,
            Who::OtherPatient => &self.other_patient_token,
        })
    }

    /// A fresh free slot start on the clinic's provider: weekdays from Monday
    /// 2026-11-30, 09:00-17:00 New York, one half hour after another.
    fn fresh_start(&self) -> String {
        let n = self.next_hour.get();
        self.next_hour.set(n + 1);
        let (day, half_hour) = (i64::from(n / 16), i64::from(n % 16));
        // Five weekdays, then skip the weekend.
        let day = day / 5 * 7 + day % 5;
        let start = chrono::DateTime::parse_from_rfc3339("2026-11-30T14:00:00Z")
            .expect("time")
            .to_utc()
            + chrono::Duration::days(day)
            + chrono::Duration::minutes(30 * half_hour);
        start.to_rfc3339()
    }

    /// A fresh appointment of the clinic's patient with the clinic's provider.
    async fn fresh_appointment(&self, app: &TestApp) -> String {
        let booked = self
            .clinic
            .book(
                app,
                &self.clinic.staff,
                &self.clinic.patient,
                &self.fresh_start(),
                json!({}),
            )
            .await;
        booked.data()["bookAppointment"]["id"].as_str().expect("id").to_owned()
    }
}

/// The document and variables that exercise `operation` on the fixture's data.
async fn call(app: &TestApp, fx: &Fixture, operation: &str) -> (String, Value) {
    let c = &fx.clinic;
    let unique = uuid::Uuid::new_v4().simple().to_string();
    let q = |text: &str| text.to_owned();
    match operation {
        "me" => (q("{ me { id } }"), json!({})),
        "locations" => (q("{ locations { id } }"), json!({})),
        "provider" => (
            q("query($id: UUID!) { provider(id: $id) { id } }"),
            json!({ "id": c.provider }),
        ),
        "providers" => (q("{ providers { edges { cursor } } }"), json!({})),
        "patient" => (
            q("query($id: UUID!) { patient(id: $id) { id name } }"),
            json!({ "id": c.patient }),
        ),
        "patients" => (q("{ patients { edges { cursor } } }"), json!({})),
        "appointmentTypes" => (q("{ appointmentTypes { id } }"), json!({})),
        "availableSlots" => (
            q("query($i: AvailableSlotsInput!) { availableSlots(input: $i) { start } }"),
            json!({ "i": { "appointmentTypeId": c.checkup, "from": "2026-12-01T00:00:00Z", "to": "2026-12-02T00:00:00Z" } }),
        ),
        "appointment" => (
            q("query($id: UUID!) { appointment(id: $id) { id patient { name } } }"),
            json!({ "id": fx.appointment }),
        ),
        "appointments" => (q("{ appointments(filter: {}) { edges { cursor } } }"), json!({})),
        "login" => (
            q("mutation { login(email: \"admin@clinic.test\", password: \"admin password 1234\") { accessToken } }"),
            json!({}),
        ),
        "refreshSession" | "logout" => {
            let session = app
                .gql(None, "mutation { login(email: \"admin@clinic.test\", password: \"admin password 1234\") { refreshToken } }", json!({}))
                .await;
            let token = session.data()["login"]["refreshToken"].clone();
            let doc = if operation == "logout" {
                "mutation($t: String!) { logout(refreshToken: $t) }"
            } else {
                "mutation($t: String!) { refreshSession(refreshToken: $t) { accessToken } }"
            };
            (q(doc), json!({ "t": token }))
        }
        "createLocation" => (
            q("mutation { createLocation(input: { name: \"X\", timeZone: \"UTC\" }) { id } }"),
            json!({}),
        ),
        "createProvider" => (
            q(
                "mutation($l: UUID!, $e: String!) { createProvider(input: { name: \"X\", email: $e, password: \"provider pass 1234\", locationIds: [$l] }) { id } }",
            ),
            json!({ "l": c.location, "e": format!("{unique}@p.test") }),
        ),
        "createUser" => (
            q(
                "mutation($e: String!) { createUser(input: { email: $e, password: \"staff password 1234\", role: STAFF }) { id } }",
            ),
            json!({ "e": format!("{unique}@s.test") }),
        ),
        "setStaffLocations" | "revokeUserSessions" => {
            let created = app
                .gql(
                    Some(&c.admin),
                    "mutation($e: String!) { createUser(input: { email: $e, password: \"staff password 1234\", role: STAFF }) { id } }",
                    json!({ "e": format!("{unique}@s.test") }),
                )
                .await;
            let user = created.data()["createUser"]["id"].clone();
            let doc = if operation == "setStaffLocations" {
                "mutation($u: UUID!, $l: UUID!) { setStaffLocations(userId: $u, locationIds: [$l]) { id } }"
            } else {
                "mutation($u: UUID!) { revokeUserSessions(userId: $u) }"
            };
            (q(doc), json!({ "u": user, "l": c.location }))
        }
        "createPatient" => (
            q("mutation { createPatient(input: { name: \"X\", birthDate: \"1990-01-01\" }) { id } }"),
            json!({}),
        ),
        "updatePatient" => (
            q("mutation($id: UUID!) { updatePatient(id: $id, input: { phone: \"+15550001111\" }) { id } }"),
            json!({ "id": c.patient }),
        ),
        "createAppointmentType" => (
            q(
                "mutation($l: UUID!) { createAppointmentType(input: { name: \"X\", durationMinutes: 20, locationId: $l }) { id } }",
            ),
            json!({ "l": c.location }),
        ),
        "setWeeklyAvailability" => (
            q(
                "mutation($p: UUID!, $l: UUID!, $r: [WeeklyRuleInput!]!) { setWeeklyAvailability(providerId: $p, locationId: $l, rules: $r) { id } }",
            ),
            json!({ "p": c.provider, "l": c.location, "r": careslot_tests::clinic::weekdays_nine_to_five() }),
        ),
        "addTimeOff" => (
            q(
                "mutation($p: UUID!) { addTimeOff(input: { providerId: $p, start: \"2027-06-01T00:00:00Z\", end: \"2027-06-02T00:00:00Z\" }) }",
            ),
            json!({ "p": c.provider }),
        ),
        "addClosedDate" => (
            q("mutation($l: UUID!) { addClosedDate(locationId: $l, date: \"2027-07-04\") }"),
            json!({ "l": c.location }),
        ),
        "holdSlot" => (
            q(
                "mutation($p: UUID!, $t: UUID!, $s: DateTime!) { holdSlot(input: { providerId: $p, appointmentTypeId: $t, start: $s }) { id } }",
            ),
            json!({ "p": c.provider, "t": c.checkup, "s": fx.fresh_start() }),
        ),
        "releaseHold" => {
            // Holds left by callers who may not release them must not count
            // against the patient's limit of live holds.
            for earlier in fx.patient_holds.take() {
                app.gql(
                    Some(&c.patient_token),
                    "mutation($id: UUID!) { releaseHold(id: $id) }",
                    json!({ "id": earlier }),
                )
                .await;
            }
            let held = app
                .gql(
                    Some(&c.patient_token),
                    "mutation($p: UUID!, $t: UUID!, $s: DateTime!) { holdSlot(input: { providerId: $p, appointmentTypeId: $t, start: $s }) { id } }",
                    json!({ "p": c.provider, "t": c.checkup, "s": fx.fresh_start() }),
                )
                .await;
            let id = held.data()["holdSlot"]["id"].clone();
            fx.patient_holds.replace(vec![id.clone()]);
            (q("mutation($id: UUID!) { releaseHold(id: $id) }"), json!({ "id": id }))
        }
        "bookAppointment" => (
            q("mutation($i: BookAppointmentInput!) { bookAppointment(input: $i) { id } }"),
            json!({ "i": { "providerId": c.provider, "patientId": c.patient, "appointmentTypeId": c.checkup, "start": fx.fresh_start() } }),
        ),
        "rescheduleAppointment" => {
            let id = fx.fresh_appointment(app).await;
            (
                q("mutation($id: UUID!, $s: DateTime!) { rescheduleAppointment(id: $id, start: $s) { id } }"),
                json!({ "id": id, "s": fx.fresh_start() }),
            )
        }
        "cancelAppointment" | "markArrived" | "markNoShow" => {
            let id = fx.fresh_appointment(app).await;
            (
                format!("mutation($id: UUID!) {{ {operation}(id: $id) {{ id }} }}"),
                json!({ "id": id }),
            )
        }
        "checkInAppointment" | "completeAppointment" => {
            let id = fx.fresh_appointment(app).await;
            c.change(app, &c.staff, "markArrived", &id).await.data();
            if operation == "completeAppointment" {
                c.change(app, &c.staff, "checkInAppointment", &id).await.data();
            }
            (
                format!("mutation($id: UUID!) {{ {operation}(id: $id) {{ id }} }}"),
                json!({ "id": id }),
            )
        }
        "deadLetters" => (q("{ deadLetters { edges { cursor } } }"), json!({})),
        "auditEvents" => (
            q("{ auditEvents(first: 5) { edges { node { seq action } } } }"),
            json!({}),
        ),
        "retryJob" => (
            q("mutation($id: UUID!) { retryJob(id: $id) { id } }"),
            json!({ "id": uuid::Uuid::new_v4() }),
        ),
        "slotsChanged" => (
            q(
                "subscription($p: UUID!) { slotsChanged(providerId: $p, from: \"2026-12-01T00:00:00Z\", to: \"2026-12-02T00:00:00Z\") { start } }",
            ),
            json!({ "p": c.provider }),
        ),
        "appointmentsChanged" => (
            q("subscription($l: UUID!) { appointmentsChanged(locationId: $l) { kind } }"),
            json!({ "l": c.location }),
        ),
        other => panic!("operation {other} has no call in tests/tests/access.rs"),
    }
}

/// What the call answered, in the terms of [`Expect`].
fn outcome(operation: &str, response: &Value) -> Expect {
    if let Some(code) = response["errors"][0]["extensions"]["code"].as_str() {
        return match code {
            "UNAUTHENTICATED" => UNAUTH,
            "FORBIDDEN" => FORBIDDEN,
            "NOT_FOUND" => NOT_FOUND,
            // Any other refusal is the operation's own rule, not access control.
            _ => Allowed,
        };
    }
    if response["data"][operation].is_null() {
        Null
    } else {
        Allowed
    }
}

async fn subscribe(app: &TestApp, who: Option<&str>, query: &str, variables: Value) -> Value {
    let mut caller = Caller::default();
    if let Some(token) = who {
        let claims = app
            .app
            .services
            .tokens
            .verify(token, domain::clock::Clock::now(&app.clock))
            .expect("valid token");
        caller.actor = Some(claims.actor());
    }
    let request = Request::new(query)
        .variables(async_graphql::Variables::from_json(variables))
        .data(RequestCaller(caller));
    let mut stream = app.app.schema.execute_stream(request, None);
    match tokio::time::timeout(std::time::Duration::from_millis(200), stream.next()).await {
        Ok(Some(response)) => serde_json::to_value(&response).expect("json"),
        // Nothing yet: the subscription is open and waiting for events.
        Ok(None) | Err(_) => json!({ "data": { "open": true } }),
    }
}

#[tokio::test]
async fn every_operation_answers_every_caller_as_its_rule_says() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let clinic = Clinic::open(&app).await;
    let other = app
        .create_provider(&clinic.admin, "Dr. Other", "other@clinic.test", &[&clinic.location])
        .await;
    assert!(!other.is_empty());
    let other_provider_token = app.login("other@clinic.test", "provider pass 1234").await;
    app.create_patient(&clinic.staff, json!({ "name": "Olive Other", "birthDate": "1970-01-01", "email": "olive@x.org", "password": "long enough password" }))
        .await;
    let other_patient_token = app.login("olive@x.org", "long enough password").await;
    let elsewhere = app.create_location(&clinic.admin, "Elsewhere", "UTC").await;
    let other_staff_token = app.staff(&clinic.admin, "far@clinic.test", &[&elsewhere]).await;
    let fx = Fixture {
        other_staff_token,
        appointment: String::new(),
        clinic,
        other_provider_token,
        other_patient_token,
        next_hour: std::cell::Cell::new(0),
        patient_holds: std::cell::RefCell::default(),
    };
    let appointment = fx.fresh_appointment(&app).await;
    let fx = Fixture { appointment, ..fx };

    let sdl = schema::sdl();
    let document = async_graphql::parser::parse_schema(&sdl).expect("sdl");
    let mut operations = Vec::new();
    for definition in &document.definitions {
        let async_graphql::parser::types::TypeSystemDefinition::Type(ty) = definition else {
            continue;
        };
        let root = ty.node.name.node.as_str();
        if let async_graphql::parser::types::TypeKind::Object(object) = &ty.node.kind
            && ["Query", "Mutation", "Subscription"].contains(&root)
        {
            operations.extend(
                object
                    .fields
                    .iter()
                    .map(|f| (root.to_owned(), f.node.name.node.to_string())),
            );
        }
    }
    assert!(operations.len() >= 30, "{operations:?}");

    let mut failures = Vec::new();
    for (root, operation) in &operations {
        for who in EVERYONE {
            let expected = rule(operation, who);
            let (query, variables) = call(&app, &fx, operation).await;
            let response = if root == "Subscription" {
                let answer = subscribe(&app, fx.token(who), &query, variables).await;
                if answer["data"]["open"] == true {
                    json!({ "data": { operation.as_str(): true } })
                } else {
                    answer
                }
            } else {
                app.gql(fx.token(who), &query, variables).await.0
            };
            let got = outcome(operation, &response);
            if got != expected {
                failures.push(format!(
                    "{operation} as {who:?}: expected {expected:?}, got {got:?}: {response}"
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} access rule violations:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
