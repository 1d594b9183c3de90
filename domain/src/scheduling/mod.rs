//! The scheduling engine: availability, slots, holds, booking and the status
//! workflow. `availability` and `status` are pure; the rest are services that
//! load what the pure parts need, apply them inside one transaction, and
//! publish events after commit.

pub mod availability;
mod booking;
mod holds;
mod lock;
mod model;
mod noshow;
mod queries;
mod rules;
mod slots;
pub mod status;
mod store;
mod workflow;

pub use model::{Appointment, AppointmentFilter, Hold, NewBooking, NewTimeOff, Slot, SlotQuery, WeeklyRuleInput};
pub use status::AppointmentStatus;
pub use store::zone as location_zone;
