//! GraphQL object and input types. Objects wrap domain values and only convert.

mod auth;
mod directory;
mod events;
mod jobs;
mod scheduling;
mod slot_list;

pub use auth::{AuthPayload, CreateUserInput, Role, User};
pub use directory::{
    AppointmentType, CreateAppointmentTypeInput, CreateLocationInput, CreatePatientInput, CreateProviderInput,
    Location, Patient, Provider, UpdatePatientInput,
};

pub use events::{AppointmentEvent, AppointmentEventKind, SlotChangeReason, SlotStatus, SlotsChangedEvent};
pub use jobs::{DeliveryStatus, Job, JobDelivery, JobKind, JobStatus};
pub use scheduling::{
    Appointment, AppointmentFilter, AppointmentStatus, AvailableSlotsInput, BookAppointmentInput, HoldSlotInput, Slot,
    SlotHold, TimeOffInput, WeeklyRuleInput,
};
pub use slot_list::SlotList;

use async_graphql::OutputType;
use async_graphql::connection::{Connection, Edge};
use domain::pagination::Page;

/// Converts a domain page into a Relay connection of `N`.
pub fn connection<T, N: OutputType>(page: Page<T>, node: impl Fn(T) -> N) -> Connection<String, N> {
    let mut connection = Connection::new(false, page.has_next_page);
    connection.edges.extend(
        page.items
            .into_iter()
            .map(|(cursor, item)| Edge::new(cursor, node(item))),
    );
    connection
}
