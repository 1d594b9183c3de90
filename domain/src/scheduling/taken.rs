//! Intervals this instance booked a moment ago, so that the crowd racing for
//! one interval hears `SLOT_UNAVAILABLE` without a database round trip.
//!
//! When a hundred clients ask for the same interval at once, one wins and the
//! others wait their turn (`BookingTurns`); each of them used to begin a
//! transaction, take the lock, read the snapshot and roll back, only to learn
//! what the winner's commit already said. A booking that commits here notes
//! its interval; a later booking of the same provider whose interval overlaps
//! a noted one is refused at once. A note is forgotten when anything may have
//! freed time of that provider: any slot event other than `BUSY` and any
//! appointment event other than its creation, from this instance at once and
//! from others as they arrive over the bus; and after [`MEMORY`] in any case,
//! which bounds how long a cancellation on another instance whose event is
//! late can be missed. Only refusals are ever answered from here: a booking
//! that may succeed always goes to the database.

use super::availability::Interval;
use crate::events::{AppointmentEventKind, DomainEvent, SlotStatus};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use uuid::Uuid;

/// How long a note counts.
pub const MEMORY: Duration = Duration::from_secs(2);

/// Most notes kept per provider (the newest).
const PER_PROVIDER: usize = 64;

/// Recently booked intervals by provider.
#[derive(Debug, Default)]
pub struct RecentlyTaken {
    notes: Mutex<HashMap<Uuid, Vec<(Interval, Instant)>>>,
}

impl RecentlyTaken {
    fn with<T>(&self, f: impl FnOnce(&mut HashMap<Uuid, Vec<(Interval, Instant)>>) -> T) -> T {
        let mut notes = self.notes.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut notes)
    }

    /// Notes that `provider`'s `interval` was booked (after the commit).
    pub fn note(&self, provider: Uuid, interval: Interval) {
        let now = Instant::now();
        self.with(|notes| {
            // Providers whose notes all lapsed are dropped here, so the map
            // holds only the providers booked within the last moment.
            if notes.len() > 1024 {
                notes.retain(|_, list| list.iter().any(|(_, at)| now.duration_since(*at) < MEMORY));
            }
            let list = notes.entry(provider).or_default();
            list.retain(|(_, at)| now.duration_since(*at) < MEMORY);
            if list.len() >= PER_PROVIDER {
                list.remove(0);
            }
            list.push((interval, now));
        });
    }

    /// True when `interval` overlaps one of `provider`'s notes still counting.
    pub fn covers(&self, provider: Uuid, interval: Interval) -> bool {
        let now = Instant::now();
        self.with(|notes| {
            notes.get(&provider).is_some_and(|list| {
                list.iter()
                    .any(|(taken, at)| now.duration_since(*at) < MEMORY && taken.overlaps(&interval))
            })
        })
    }

    /// Forgets a provider's notes when `event` may have freed some of its time.
    pub fn on_event(&self, event: &DomainEvent) {
        let (provider, may_free) = match event {
            DomainEvent::Slot(slot) => (slot.provider_id.0, slot.status != SlotStatus::Busy),
            DomainEvent::Appointment(change) => (change.provider_id.0, change.kind != AppointmentEventKind::Created),
        };
        if may_free {
            self.with(|notes| notes.remove(&provider));
        }
    }

    /// Forgets everything (events may have been lost).
    pub fn clear(&self) {
        self.with(HashMap::clear);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{SlotChangeReason, SlotEvent};
    use chrono::{DateTime, Utc};

    fn at(minute: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + minute * 60, 0).expect("instant")
    }

    fn slot(provider: Uuid, status: SlotStatus, reason: SlotChangeReason) -> DomainEvent {
        DomainEvent::Slot(SlotEvent {
            provider_id: provider.into(),
            start: at(0),
            end: at(30),
            status,
            reason,
        })
    }

    #[test]
    fn a_noted_interval_refuses_overlaps_of_that_provider_only() {
        let taken = RecentlyTaken::default();
        let (provider, other) = (Uuid::new_v4(), Uuid::new_v4());
        taken.note(provider, Interval::new(at(0), at(30)));
        assert!(taken.covers(provider, Interval::new(at(0), at(30))));
        assert!(taken.covers(provider, Interval::new(at(15), at(45))), "an overlap");
        assert!(
            !taken.covers(provider, Interval::new(at(30), at(60))),
            "touching is free"
        );
        assert!(!taken.covers(other, Interval::new(at(0), at(30))), "another provider");
    }

    #[test]
    fn anything_that_may_free_time_forgets_the_provider() {
        let taken = RecentlyTaken::default();
        let provider = Uuid::new_v4();
        let interval = Interval::new(at(0), at(30));
        taken.note(provider, interval);
        taken.on_event(&slot(provider, SlotStatus::Busy, SlotChangeReason::Booked));
        assert!(taken.covers(provider, interval), "another booking frees nothing");
        taken.on_event(&slot(provider, SlotStatus::Free, SlotChangeReason::Released));
        assert!(!taken.covers(provider, interval), "a release forgets");

        taken.note(provider, interval);
        taken.on_event(&slot(provider, SlotStatus::BusyTentative, SlotChangeReason::Held));
        assert!(!taken.covers(provider, interval), "anything but BUSY forgets");

        taken.note(provider, interval);
        taken.clear();
        assert!(!taken.covers(provider, interval), "lost events forget everything");
    }
}
