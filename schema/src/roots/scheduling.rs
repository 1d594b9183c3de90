//! Availability, slots, holds, bookings and the status workflow.

use crate::scalars::Date;
use crate::types::{
    Appointment, AppointmentFilter, AvailableSlotsInput, BookAppointmentInput, HoldSlotInput, Provider, SlotHold,
    SlotList, TimeOffInput, WeeklyRuleInput, connection,
};
use crate::{IntoGqlResult, caller, services};
use async_graphql::connection::Connection;
use async_graphql::{Context, Object, Result};
use chrono::{DateTime, Utc};
use domain::scheduling::{NewTimeOff, SlotQuery};
use uuid::Uuid;

/// Queries of the schedule.
#[derive(Default)]
pub struct SchedulingQuery;

#[Object]
impl SchedulingQuery {
    /// Free intervals in [from, to), ordered by start then provider. Slots start at each weekly
    /// rule's start and step by the type's duration (or by its slot interval when one is set).
    async fn available_slots(&self, ctx: &Context<'_>, input: AvailableSlotsInput) -> Result<SlotList> {
        let query = SlotQuery {
            provider_id: input.provider_id.map(Into::into),
            location_id: input.location_id.map(Into::into),
            appointment_type_id: input.appointment_type_id.into(),
            from: input.from,
            to: input.to,
        };
        let slots = services(ctx).available_slots(caller(ctx), query).await.gql()?;
        Ok(SlotList::new(ctx, slots))
    }

    /// One appointment; null when there is none or the caller may not see it. Audited.
    async fn appointment(&self, ctx: &Context<'_>, id: Uuid) -> Result<Option<Appointment>> {
        Ok(services(ctx)
            .appointment(caller(ctx), id.into())
            .await
            .gql()?
            .map(Appointment))
    }

    /// Appointments the caller may see, by start. Audited.
    async fn appointments(
        &self,
        ctx: &Context<'_>,
        filter: AppointmentFilter,
        #[graphql(default = 50)] first: Option<i32>,
        after: Option<String>,
    ) -> Result<Connection<String, Appointment>> {
        let page = services(ctx)
            .appointments(caller(ctx), filter.into(), first.unwrap_or(50), after.as_deref())
            .await
            .gql()?;
        Ok(connection(page, Appointment))
    }
}

/// Mutations of the schedule.
#[derive(Default)]
pub struct SchedulingMutation;

#[Object]
impl SchedulingMutation {
    /// Replaces every weekly rule of this provider at this location.
    async fn set_weekly_availability(
        &self,
        ctx: &Context<'_>,
        provider_id: Uuid,
        location_id: Uuid,
        rules: Vec<WeeklyRuleInput>,
    ) -> Result<Provider> {
        services(ctx)
            .set_weekly_availability(
                caller(ctx),
                provider_id.into(),
                location_id.into(),
                rules.into_iter().map(Into::into).collect(),
            )
            .await
            .gql()
            .map(Provider)
    }

    /// Blocks an interval of a provider's time.
    async fn add_time_off(&self, ctx: &Context<'_>, input: TimeOffInput) -> Result<bool> {
        let input = NewTimeOff {
            provider_id: input.provider_id.into(),
            start: input.start,
            end: input.end,
            reason: input.reason,
        };
        services(ctx).add_time_off(caller(ctx), input).await.gql()
    }

    /// Closes a location for a day of its own calendar (a holiday).
    async fn add_closed_date(
        &self,
        ctx: &Context<'_>,
        location_id: Uuid,
        date: Date,
        reason: Option<String>,
    ) -> Result<bool> {
        services(ctx)
            .add_closed_date(caller(ctx), location_id.into(), date.0, reason)
            .await
            .gql()
    }

    /// Reserves the interval for the caller for a few minutes (default 5); others see it taken.
    async fn hold_slot(&self, ctx: &Context<'_>, input: HoldSlotInput) -> Result<SlotHold> {
        services(ctx)
            .hold_slot(
                caller(ctx),
                input.provider_id.into(),
                input.appointment_type_id.into(),
                input.start,
            )
            .await
            .gql()
            .map(SlotHold::from)
    }

    /// Releases a hold.
    async fn release_hold(&self, ctx: &Context<'_>, id: Uuid) -> Result<bool> {
        services(ctx).release_hold(caller(ctx), id.into()).await.gql()
    }

    /// start must be a slot start that availableSlots would offer (on the type's grid).
    async fn book_appointment(&self, ctx: &Context<'_>, input: BookAppointmentInput) -> Result<Appointment> {
        services(ctx)
            .book_appointment(caller(ctx), input.into())
            .await
            .gql()
            .map(Appointment)
    }

    /// Moves an appointment to another start (same id; the old interval stays in its history).
    async fn reschedule_appointment(&self, ctx: &Context<'_>, id: Uuid, start: DateTime<Utc>) -> Result<Appointment> {
        services(ctx)
            .reschedule_appointment(caller(ctx), id.into(), start)
            .await
            .gql()
            .map(Appointment)
    }

    /// Cancels an appointment that has not begun; the reason is kept.
    async fn cancel_appointment(&self, ctx: &Context<'_>, id: Uuid, reason: Option<String>) -> Result<Appointment> {
        services(ctx)
            .cancel_appointment(caller(ctx), id.into(), reason)
            .await
            .gql()
            .map(Appointment)
    }

    /// BOOKED -> ARRIVED.
    async fn mark_arrived(&self, ctx: &Context<'_>, id: Uuid) -> Result<Appointment> {
        services(ctx)
            .mark_arrived(caller(ctx), id.into())
            .await
            .gql()
            .map(Appointment)
    }

    /// ARRIVED -> CHECKED_IN.
    async fn check_in_appointment(&self, ctx: &Context<'_>, id: Uuid) -> Result<Appointment> {
        services(ctx)
            .check_in_appointment(caller(ctx), id.into())
            .await
            .gql()
            .map(Appointment)
    }

    /// CHECKED_IN -> FULFILLED.
    async fn complete_appointment(&self, ctx: &Context<'_>, id: Uuid) -> Result<Appointment> {
        services(ctx)
            .complete_appointment(caller(ctx), id.into())
            .await
            .gql()
            .map(Appointment)
    }

    /// BOOKED -> NOSHOW; refused before the appointment's start.
    async fn mark_no_show(&self, ctx: &Context<'_>, id: Uuid) -> Result<Appointment> {
        services(ctx)
            .mark_no_show(caller(ctx), id.into())
            .await
            .gql()
            .map(Appointment)
    }
}
