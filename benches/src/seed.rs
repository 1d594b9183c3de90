//! A realistic clinic, made through the public GraphQL API only: one location,
//! providers working around the clock every day of the week, a 30-minute visit
//! type, patients, and thousands of appointments in the coming week.

use crate::gql::{Api, BOOK};
use crate::server::{ADMIN_EMAIL, ADMIN_PASSWORD};
use anyhow::{Context as _, bail};
use chrono::{DateTime, Duration, DurationRound, Utc};
use futures_util::StreamExt;
use serde_json::{Value, json};

/// How big the clinic is.
#[derive(Clone, Copy, Debug)]
pub struct Size {
    /// Providers.
    pub providers: usize,
    /// Patients.
    pub patients: usize,
    /// Appointments booked per provider per day in the first week.
    pub per_provider_day: usize,
}

/// Ids and tokens of the seeded clinic.
#[derive(Clone, Debug)]
pub struct Clinic {
    /// ADMIN token (books, reads).
    pub admin: String,
    /// Providers.
    pub providers: Vec<String>,
    /// The 30-minute visit type.
    pub kind: String,
    /// Patients.
    pub patients: Vec<String>,
    /// Midnight UTC at the start of the seeded week (tomorrow).
    pub week: DateTime<Utc>,
    /// Appointments booked while seeding.
    pub booked: usize,
}

/// Slot length of the visit type.
pub const SLOT_MINUTES: i64 = 30;

impl Clinic {
    /// The start of slot `index` (counted in 30-minute steps) from `day` days after the week's start.
    pub fn slot(&self, day: i64, index: i64) -> DateTime<Utc> {
        self.week + Duration::days(day) + Duration::minutes(SLOT_MINUTES * index)
    }

    /// The booking input of `provider` (index) at `start` for patient index `patient`.
    pub fn booking(&self, provider: usize, patient: usize, start: DateTime<Utc>) -> Value {
        json!({ "i": {
            "providerId": self.providers[provider % self.providers.len()],
            "patientId": self.patients[patient % self.patients.len()],
            "appointmentTypeId": self.kind,
            "start": start.to_rfc3339(),
        }})
    }
}

fn id(value: &Value, field: &str) -> anyhow::Result<String> {
    value[field]["id"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("{field} answered no id: {value}"))
}

/// Seeds the clinic on `api`.
pub async fn seed(api: &Api, size: Size) -> anyhow::Result<Clinic> {
    let admin = api.login(ADMIN_EMAIL, ADMIN_PASSWORD).await?;
    let location = id(
        &api.data(
            &admin,
            "mutation { createLocation(input: { name: \"Bench Clinic\", timeZone: \"UTC\" }) { id } }",
            json!({}),
        )
        .await?,
        "createLocation",
    )?;
    let kind = id(
        &api.data(
            &admin,
            "mutation($l: UUID!) { createAppointmentType(input: { name: \"Visit\", durationMinutes: 30, locationId: $l }) { id } }",
            json!({ "l": location }),
        )
        .await?,
        "createAppointmentType",
    )?;
    let rules: Vec<Value> = (1..=7)
        .map(|d| json!({ "weekday": d, "startTime": "00:00", "endTime": "24:00" }))
        .collect();
    // Providers hash a password each (argon2): a few at a time.
    let providers: Vec<anyhow::Result<String>> = futures_util::stream::iter(0..size.providers)
        .map(|n| {
            let (api, admin, location, rules) = (api.clone(), admin.clone(), location.clone(), rules.clone());
            async move {
                let created = api
                    .data(
                        &admin,
                        "mutation($l: UUID!, $e: String!, $n: String!) { createProvider(input: { name: $n, email: $e, password: \"provider pass 1234\", locationIds: [$l] }) { id } }",
                        json!({ "l": location, "e": format!("provider{n}@bench.test"), "n": format!("Dr. Bench {n}") }),
                    )
                    .await?;
                let provider = id(&created, "createProvider")?;
                api.data(
                    &admin,
                    "mutation($p: UUID!, $l: UUID!, $r: [WeeklyRuleInput!]!) { setWeeklyAvailability(providerId: $p, locationId: $l, rules: $r) { id } }",
                    json!({ "p": provider, "l": location, "r": rules }),
                )
                .await?;
                Ok(provider)
            }
        })
        .buffered(4)
        .collect()
        .await;
    let providers = providers.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
    let patients: Vec<anyhow::Result<String>> = futures_util::stream::iter(0..size.patients)
        .map(|n| {
            let (api, admin) = (api.clone(), admin.clone());
            async move {
                let created = api
                    .data(
                        &admin,
                        "mutation($n: String!, $e: String!) { createPatient(input: { name: $n, birthDate: \"1980-02-02\", email: $e }) { id } }",
                        json!({ "n": format!("Patient {n}"), "e": format!("patient{n}@bench.test") }),
                    )
                    .await?;
                id(&created, "createPatient")
            }
        })
        .buffered(16)
        .collect()
        .await;
    let patients = patients.into_iter().collect::<anyhow::Result<Vec<_>>>()?;
    let week = (Utc::now() + Duration::days(1))
        .duration_trunc(Duration::days(1))
        .context("midnight")?;
    let mut clinic = Clinic {
        admin,
        providers,
        kind,
        patients,
        week,
        booked: 0,
    };
    // Appointments spread over the week's working hours (08:00 on), every third slot.
    let mut bookings = Vec::new();
    for provider in 0..clinic.providers.len() {
        for day in 0..7 {
            for k in 0..size.per_provider_day {
                let start = clinic.slot(day, 16 + 3 * k as i64);
                bookings.push(clinic.booking(provider, provider + k, start));
            }
        }
    }
    let results: Vec<anyhow::Result<()>> = futures_util::stream::iter(bookings)
        .map(|variables| {
            let (api, admin) = (api.clone(), clinic.admin.clone());
            async move {
                api.data(&admin, BOOK, variables).await?;
                Ok(())
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    for result in &results {
        if let Err(e) = result {
            bail!("seeding a booking failed: {e:#}");
        }
    }
    clinic.booked = results.len();
    Ok(clinic)
}
