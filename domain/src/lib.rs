//! The rules of the clinic, with no HTTP and no GraphQL in it.
//!
//! Every operation is a method of [`services::Services`] taking a
//! [`services::Caller`]; it checks permission, runs in one transaction with its
//! audit records, and publishes events after commit.

pub mod auth;
pub mod clock;
pub mod db;
pub mod directory;
pub mod error;
pub mod events;
pub mod ids;
pub mod jobs;
pub mod limits;
pub mod notifications;
pub mod pagination;
pub mod phi;
pub mod scheduling;
pub mod secrets;
pub mod services;
pub mod settings;
mod validate;

pub use error::{ServiceError, ServiceResult};
pub use services::{Caller, Policy, Services};
