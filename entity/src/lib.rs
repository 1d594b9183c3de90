//! SeaORM entities of Careslot, one module per table.
#![allow(missing_docs)] // the derive macros generate undocumented items

pub mod appointment;
pub mod appointment_history;
pub mod appointment_type;
pub mod audit_log;
pub mod availability_rule;
pub mod hold;
pub mod job;
pub mod job_delivery;
pub mod location;
pub mod location_closed_date;
pub mod patient;
pub mod patient_name_token;
pub mod provider;
pub mod provider_location;
pub mod refresh_token;
pub mod staff_location;
pub mod time_off;
pub mod user;
