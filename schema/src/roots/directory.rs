//! Locations, providers, patients and appointment types.

use crate::types::{
    AppointmentType, CreateAppointmentTypeInput, CreateLocationInput, CreatePatientInput, CreateProviderInput,
    Location, Patient, Provider, UpdatePatientInput, connection,
};
use crate::{IntoGqlResult, caller, services};
use async_graphql::connection::Connection;
use async_graphql::{Context, Object, Result};
use domain::directory::{NewLocation, NewProvider};
use uuid::Uuid;

/// Queries of the directory.
#[derive(Default)]
pub struct DirectoryQuery;

#[Object]
impl DirectoryQuery {
    /// Every location.
    async fn locations(&self, ctx: &Context<'_>) -> Result<Vec<Location>> {
        let list = services(ctx).locations(caller(ctx)).await.gql()?;
        Ok(list.into_iter().map(Location).collect())
    }

    /// One provider; null when there is none with this id.
    async fn provider(&self, ctx: &Context<'_>, id: Uuid) -> Result<Option<Provider>> {
        Ok(services(ctx)
            .provider(caller(ctx), id.into())
            .await
            .gql()?
            .map(Provider))
    }

    /// Providers by name, optionally of one location.
    async fn providers(
        &self,
        ctx: &Context<'_>,
        location_id: Option<Uuid>,
        #[graphql(default = 20)] first: Option<i32>,
        after: Option<String>,
    ) -> Result<Connection<String, Provider>> {
        let page = services(ctx)
            .providers(
                caller(ctx),
                location_id.map(Into::into),
                first.unwrap_or(20),
                after.as_deref(),
            )
            .await
            .gql()?;
        Ok(connection(page, Provider))
    }

    /// One patient; null when there is none or the caller may not see it. Audited.
    async fn patient(&self, ctx: &Context<'_>, id: Uuid) -> Result<Option<Patient>> {
        Ok(services(ctx).patient(caller(ctx), id.into()).await.gql()?.map(Patient))
    }

    /// Patients the caller may see, matching an email, a phone number or whole
    /// words of the name. Audited.
    async fn patients(
        &self,
        ctx: &Context<'_>,
        search: Option<String>,
        #[graphql(default = 20)] first: Option<i32>,
        after: Option<String>,
    ) -> Result<Connection<String, Patient>> {
        let page = services(ctx)
            .patients(caller(ctx), search.as_deref(), first.unwrap_or(20), after.as_deref())
            .await
            .gql()?;
        Ok(connection(page, Patient))
    }

    /// Appointment types, of one location or all.
    async fn appointment_types(&self, ctx: &Context<'_>, location_id: Option<Uuid>) -> Result<Vec<AppointmentType>> {
        let list = services(ctx)
            .appointment_types(caller(ctx), location_id.map(Into::into))
            .await
            .gql()?;
        Ok(list.into_iter().map(AppointmentType).collect())
    }
}

/// Mutations of the directory.
#[derive(Default)]
pub struct DirectoryMutation;

#[Object]
impl DirectoryMutation {
    /// Creates a location (ADMIN).
    async fn create_location(&self, ctx: &Context<'_>, input: CreateLocationInput) -> Result<Location> {
        let input = NewLocation {
            name: input.name,
            time_zone: input.time_zone,
            cancel_notice_minutes: input.cancel_notice_minutes,
            reminder_offsets_minutes: input.reminder_offsets_minutes,
            sms_quiet_hours: input.sms_quiet_hours,
        };
        services(ctx)
            .create_location(caller(ctx), input)
            .await
            .gql()
            .map(Location)
    }

    /// Creates a provider and their PROVIDER sign-in (ADMIN).
    async fn create_provider(&self, ctx: &Context<'_>, input: CreateProviderInput) -> Result<Provider> {
        let input = NewProvider {
            name: input.name,
            email: input.email,
            password: input.password,
            location_ids: input.location_ids.into_iter().map(Into::into).collect(),
        };
        services(ctx)
            .create_provider(caller(ctx), input)
            .await
            .gql()
            .map(Provider)
    }

    /// Registers a patient (ADMIN, STAFF). Audited.
    async fn create_patient(&self, ctx: &Context<'_>, input: CreatePatientInput) -> Result<Patient> {
        services(ctx)
            .create_patient(caller(ctx), input.into())
            .await
            .gql()
            .map(Patient)
    }

    /// Changes a patient's details (ADMIN, STAFF, the patient). Audited.
    async fn update_patient(&self, ctx: &Context<'_>, id: Uuid, input: UpdatePatientInput) -> Result<Patient> {
        services(ctx)
            .update_patient(caller(ctx), id.into(), input.into())
            .await
            .gql()
            .map(Patient)
    }

    /// Creates an appointment type (ADMIN, STAFF).
    async fn create_appointment_type(
        &self,
        ctx: &Context<'_>,
        input: CreateAppointmentTypeInput,
    ) -> Result<AppointmentType> {
        services(ctx)
            .create_appointment_type(caller(ctx), input.into())
            .await
            .gql()
            .map(AppointmentType)
    }
}
