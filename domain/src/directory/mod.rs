//! The clinic's directory: locations, providers, patients, appointment types.

mod appointment_types;
mod locations;
mod patients;
mod providers;

pub use appointment_types::{AppointmentType, NewAppointmentType};
pub use locations::{Location, NewLocation};
pub use patients::{NewPatient, Patient, PatientUpdate};
pub use providers::{NewProvider, Provider};
