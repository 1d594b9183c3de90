//! The scheduling engine: availability, slots, holds, booking and the status
//! workflow. `availability` and `status` are pure; the rest are services that
//! load what the pure parts need, apply them inside one transaction, and
//! publish events after commit.

pub mod availability;
mod batch;
mod booking;
mod booking_turns;
mod cache;
mod holds;
mod lock;
mod model;
mod noshow;
mod queries;
mod rules;
mod slots;
mod snapshot;
pub mod status;
mod store;
mod taken;
mod workflow;

pub use model::{
    Appointment, AppointmentFilter, Hold, MAX_APPOINTMENT_LENGTH, MAX_APPOINTMENT_MINUTES, NewBooking, NewTimeOff,
    Slot, SlotQuery, WeeklyRuleInput,
};
pub use status::AppointmentStatus;

/// Validates weekly rules as `setWeeklyAvailability` does (for property tests).
#[cfg(test)]
pub(crate) fn parse_rules_for_tests(rules: &[WeeklyRuleInput]) -> crate::ServiceResult<Vec<(i16, u32, u32)>> {
    rules::parse_rules(rules)
}
pub use batch::{BATCH_SIZE, BookingBatches, MAX_BATCH};
pub use booking_turns::BookingTurns;
pub use cache::{SlotCache, follow as follow_slot_events};
pub use lock::{ProviderTurns, lock_key as provider_lock_key};
pub(crate) use slots::location_exists;
pub use store::zone as location_zone;
