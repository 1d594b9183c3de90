//! Shortcuts that create directory records through the public API.

use crate::TestApp;
use serde_json::{Value, json};

impl TestApp {
    /// Creates a location (as `token`) and answers its id.
    pub async fn create_location(&self, token: &str, name: &str, time_zone: &str) -> String {
        let response = self
            .gql(
                Some(token),
                "mutation($i: CreateLocationInput!) { createLocation(input: $i) { id } }",
                json!({ "i": { "name": name, "timeZone": time_zone } }),
            )
            .await;
        id(response.data(), "createLocation")
    }

    /// Creates a provider with a sign-in and answers its id.
    pub async fn create_provider(&self, token: &str, name: &str, email: &str, location_ids: &[&str]) -> String {
        let response = self
            .gql(
                Some(token),
                "mutation($i: CreateProviderInput!) { createProvider(input: $i) { id } }",
                json!({ "i": { "name": name, "email": email, "password": "provider pass 1234", "locationIds": location_ids } }),
            )
            .await;
        id(response.data(), "createProvider")
    }

    /// Creates a patient (with a sign-in when `password` is given) and answers its id.
    pub async fn create_patient(&self, token: &str, input: Value) -> String {
        let response = self
            .gql(
                Some(token),
                "mutation($i: CreatePatientInput!) { createPatient(input: $i) { id } }",
                json!({ "i": input }),
            )
            .await;
        id(response.data(), "createPatient")
    }

    /// Creates an appointment type and answers its id.
    pub async fn create_appointment_type(&self, token: &str, location_id: &str, name: &str, minutes: i32) -> String {
        let response = self
            .gql(
                Some(token),
                "mutation($i: CreateAppointmentTypeInput!) { createAppointmentType(input: $i) { id } }",
                json!({ "i": { "name": name, "durationMinutes": minutes, "locationId": location_id } }),
            )
            .await;
        id(response.data(), "createAppointmentType")
    }

    /// Creates a STAFF account working at `locations` and answers its access token.
    pub async fn staff(&self, admin: &str, email: &str, locations: &[&str]) -> String {
        self.gql(
            Some(admin),
            "mutation($i: CreateUserInput!) { createUser(input: $i) { id } }",
            json!({ "i": { "email": email, "password": "staff password 1234", "role": "STAFF", "locationIds": locations } }),
        )
        .await
        .data();
        self.login(email, "staff password 1234").await
    }
}

fn id(data: &Value, field: &str) -> String {
    data[field]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{field} answered no id: {data}"))
        .to_owned()
}
