//! Typed ids: a provider id cannot be passed where a patient id is expected.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A new time-ordered (v7) id.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl From<Uuid> for $name {
            fn from(id: Uuid) -> Self {
                Self(id)
            }
        }

        impl From<$name> for Uuid {
            fn from(id: $name) -> Self {
                id.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}

id_type!(
    /// Id of a user account.
    UserId
);
id_type!(
    /// Id of a location.
    LocationId
);
id_type!(
    /// Id of a provider.
    ProviderId
);
id_type!(
    /// Id of a patient.
    PatientId
);
id_type!(
    /// Id of an appointment type.
    AppointmentTypeId
);
id_type!(
    /// Id of an appointment.
    AppointmentId
);
id_type!(
    /// Id of a slot hold.
    HoldId
);
