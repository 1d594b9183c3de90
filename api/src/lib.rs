//! careslot-api: wiring of settings, telemetry, services and the axum router.
//! `main.rs` is only the command line; tests build the same [`app::App`].

pub mod app;
mod caller;
pub mod commands;
mod health;
pub mod http;
mod limits;
pub mod startup;
pub mod telemetry;
pub mod ws;
