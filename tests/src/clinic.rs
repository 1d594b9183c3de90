//! A small clinic set up through the public API, for scheduling tests: one
//! location in New York, a provider working weekdays 09:00-17:00 there, a
//! 30-minute checkup, a patient who signs in, and a front-desk STAFF account.

use crate::{Gql, TestApp};
use serde_json::{Value, json};

/// Ids and tokens of the clinic.
pub struct Clinic {
    /// ADMIN token.
    pub admin: String,
    /// STAFF token.
    pub staff: String,
    /// The location (America/New_York).
    pub location: String,
    /// The provider.
    pub provider: String,
    /// The provider's token.
    pub provider_token: String,
    /// A 30-minute type.
    pub checkup: String,
    /// The patient.
    pub patient: String,
    /// The patient's token.
    pub patient_token: String,
}

/// Weekdays 09:00-17:00.
pub fn weekdays_nine_to_five() -> Value {
    json!(
        (1..=5)
            .map(|d| json!({ "weekday": d, "startTime": "09:00", "endTime": "17:00" }))
            .collect::<Vec<_>>()
    )
}

impl Clinic {
    /// Sets the clinic up on `app`.
    pub async fn open(app: &TestApp) -> Self {
        let admin = app.admin().await;
        let location = app.create_location(&admin, "Main Street", "America/New_York").await;
        let staff = app.staff(&admin, "desk@clinic.test", &[&location]).await;
        let provider = app
            .create_provider(&admin, "Dr. Grey", "grey@clinic.test", &[&location])
            .await;
        let provider_token = app.login("grey@clinic.test", "provider pass 1234").await;
        let checkup = app.create_appointment_type(&staff, &location, "Checkup", 30).await;
        let patient = app
            .create_patient(&staff, json!({ "name": "Pat Patient", "birthDate": "1980-02-02", "email": "pat@example.org", "password": "patient password 1" }))
            .await;
        let patient_token = app.login("pat@example.org", "patient password 1").await;
        let clinic = Self {
            admin,
            staff,
            location,
            provider,
            provider_token,
            checkup,
            patient,
            patient_token,
        };
        clinic
            .set_rules(app, &clinic.provider, weekdays_nine_to_five())
            .await
            .data();
        clinic
    }

    /// Replaces a provider's weekly rules at the clinic's location.
    pub async fn set_rules(&self, app: &TestApp, provider: &str, rules: Value) -> Gql {
        app.gql(
            Some(&self.staff),
            "mutation($p: UUID!, $l: UUID!, $r: [WeeklyRuleInput!]!) { setWeeklyAvailability(providerId: $p, locationId: $l, rules: $r) { id } }",
            json!({ "p": provider, "l": self.location, "r": rules }),
        )
        .await
    }

    /// Free slot starts of `provider` (all providers when `None`) for `kind` in [from, to), as `token` sees them.
    pub async fn slots(
        &self,
        app: &TestApp,
        token: &str,
        provider: Option<&str>,
        kind: &str,
        from: &str,
        to: &str,
    ) -> Vec<(String, String)> {
        let response = app
            .gql(
                Some(token),
                "query($i: AvailableSlotsInput!) { availableSlots(input: $i) { providerId start end status } }",
                json!({ "i": { "providerId": provider, "appointmentTypeId": kind, "from": from, "to": to } }),
            )
            .await;
        response.data()["availableSlots"]
            .as_array()
            .expect("slots")
            .iter()
            .map(|s| {
                assert_eq!(s["status"], "FREE");
                (
                    s["providerId"].as_str().expect("id").to_owned(),
                    s["start"].as_str().expect("start").to_owned(),
                )
            })
            .collect()
    }

    /// The checkup slot starts of the clinic's provider on Thursday 2026-11-26 (New York).
    pub async fn thursday(&self, app: &TestApp, token: &str) -> Vec<String> {
        self.slots(
            app,
            token,
            Some(&self.provider),
            &self.checkup,
            "2026-11-26T00:00:00Z",
            "2026-11-27T00:00:00Z",
        )
        .await
        .into_iter()
        .map(|(_, start)| start)
        .collect()
    }

    /// Books a checkup with the clinic's provider as `token`.
    pub async fn book(&self, app: &TestApp, token: &str, patient: &str, start: &str, extra: Value) -> Gql {
        let mut input = json!({ "providerId": self.provider, "patientId": patient, "appointmentTypeId": self.checkup, "start": start });
        if let (Some(input), Some(extra)) = (input.as_object_mut(), extra.as_object()) {
            input.extend(extra.clone());
        }
        app.gql(
            Some(token),
            "mutation($i: BookAppointmentInput!) { bookAppointment(input: $i) { id status start end locationId cancellationReason provider { id } patient { id name } appointmentType { id durationMinutes } } }",
            json!({ "i": input }),
        )
        .await
    }

    /// Runs a status mutation (`markArrived`, `cancelAppointment`, ...) on `id` as `token`.
    pub async fn change(&self, app: &TestApp, token: &str, mutation: &str, id: &str) -> Gql {
        app.gql(
            Some(token),
            &format!("mutation($id: UUID!) {{ {mutation}(id: $id) {{ id status cancellationReason start end }} }}"),
            json!({ "id": id }),
        )
        .await
    }
}

/// RFC 3339 in the form the API answers.
pub fn at(text: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(text)
        .expect("rfc3339")
        .to_utc()
        .to_rfc3339()
}
