//! The FHIR Appointment.status workflow as a pure state machine.

use serde::{Deserialize, Serialize};

/// FHIR R4/R5 Appointment.status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AppointmentStatus {
    /// Suggested, not yet agreed.
    Proposed,
    /// Agreed in principle, awaiting confirmation.
    Pending,
    /// Confirmed.
    Booked,
    /// The patient is here.
    Arrived,
    /// The patient has checked in and waits to be seen.
    CheckedIn,
    /// The visit took place.
    Fulfilled,
    /// Cancelled before it took place.
    Cancelled,
    /// The patient did not come.
    Noshow,
    /// Recorded by mistake.
    EnteredInError,
    /// On a waiting list for a slot.
    Waitlist,
}

/// Every status, for exhaustive tests and listings.
pub const ALL_STATUSES: [AppointmentStatus; 10] = [
    AppointmentStatus::Proposed,
    AppointmentStatus::Pending,
    AppointmentStatus::Booked,
    AppointmentStatus::Arrived,
    AppointmentStatus::CheckedIn,
    AppointmentStatus::Fulfilled,
    AppointmentStatus::Cancelled,
    AppointmentStatus::Noshow,
    AppointmentStatus::EnteredInError,
    AppointmentStatus::Waitlist,
];

impl AppointmentStatus {
    /// The FHIR code, as stored.
    pub fn code(self) -> &'static str {
        match self {
            Self::Proposed => "proposed",
            Self::Pending => "pending",
            Self::Booked => "booked",
            Self::Arrived => "arrived",
            Self::CheckedIn => "checked-in",
            Self::Fulfilled => "fulfilled",
            Self::Cancelled => "cancelled",
            Self::Noshow => "noshow",
            Self::EnteredInError => "entered-in-error",
            Self::Waitlist => "waitlist",
        }
    }

    /// Parses a stored FHIR code.
    pub fn from_code(code: &str) -> Option<Self> {
        ALL_STATUSES.into_iter().find(|s| s.code() == code)
    }

    /// True when an appointment in this status occupies the provider's time
    /// (the PostgreSQL exclusion constraint uses the same list).
    pub fn blocks_time(self) -> bool {
        matches!(
            self,
            Self::Pending | Self::Booked | Self::Arrived | Self::CheckedIn | Self::Fulfilled
        )
    }

    /// True while the visit has not begun: it may still be cancelled or moved.
    pub fn is_before_arrival(self) -> bool {
        matches!(self, Self::Proposed | Self::Pending | Self::Booked | Self::Waitlist)
    }

    /// True when `self -> to` is a step of the workflow:
    /// BOOKED -> ARRIVED -> CHECKED_IN -> FULFILLED; BOOKED -> NOSHOW;
    /// PROPOSED/WAITLIST -> PENDING -> BOOKED (and PROPOSED/WAITLIST -> BOOKED);
    /// anything before ARRIVED -> CANCELLED; anything not final -> ENTERED_IN_ERROR.
    pub fn can_become(self, to: AppointmentStatus) -> bool {
        use AppointmentStatus::*;
        match (self, to) {
            (Booked, Arrived) | (Arrived, CheckedIn) | (CheckedIn, Fulfilled) | (Booked, Noshow) => true,
            (Proposed | Waitlist, Pending | Booked) | (Pending, Booked) => true,
            (from, Cancelled) => from.is_before_arrival(),
            (from, EnteredInError) => !from.is_final(),
            _ => false,
        }
    }

    /// True when nothing follows.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Self::Fulfilled | Self::Cancelled | Self::Noshow | Self::EnteredInError
        )
    }
}

#[cfg(test)]
mod tests {
    use super::AppointmentStatus::*;
    use super::*;

    #[test]
    fn every_pair_is_allowed_or_refused_as_specified() {
        let allowed = [
            (Booked, Arrived),
            (Arrived, CheckedIn),
            (CheckedIn, Fulfilled),
            (Booked, Noshow),
            (Proposed, Pending),
            (Proposed, Booked),
            (Waitlist, Pending),
            (Waitlist, Booked),
            (Pending, Booked),
            (Proposed, Cancelled),
            (Pending, Cancelled),
            (Booked, Cancelled),
            (Waitlist, Cancelled),
            (Proposed, EnteredInError),
            (Pending, EnteredInError),
            (Booked, EnteredInError),
            (Arrived, EnteredInError),
            (CheckedIn, EnteredInError),
            (Waitlist, EnteredInError),
        ];
        for from in ALL_STATUSES {
            for to in ALL_STATUSES {
                assert_eq!(from.can_become(to), allowed.contains(&(from, to)), "{from:?} -> {to:?}");
            }
        }
    }

    #[test]
    fn codes_round_trip_and_blocking_matches_the_constraint() {
        for status in ALL_STATUSES {
            assert_eq!(AppointmentStatus::from_code(status.code()), Some(status));
        }
        let blocking: Vec<&str> = ALL_STATUSES
            .iter()
            .filter(|s| s.blocks_time())
            .map(|s| s.code())
            .collect();
        let constraint: Vec<String> = migration::BLOCKING_STATUSES_SQL
            .split(',')
            .map(|s| s.trim_matches('\'').to_owned())
            .collect();
        assert_eq!(blocking, constraint);
    }
}
