//! The scenarios of issue 8, one module each.

pub mod book;
pub mod fanout;
pub mod hot;
pub mod queue;
pub mod slots;
pub mod startup;

use crate::config::Config;
use crate::gql::Api;
use crate::seed::Clinic;
use crate::server::{Launch, Server};
use sea_orm::DatabaseConnection;

/// What every scenario gets.
pub struct Ctx {
    /// The run's configuration.
    pub config: Config,
    /// The server under load (PostgreSQL + Redis).
    pub server: Server,
    /// How it was launched (scenarios that start more servers copy it).
    pub launch: Launch,
    /// Its GraphQL endpoint.
    pub api: Api,
    /// The seeded clinic.
    pub clinic: Clinic,
    /// The bench's own connection to the server's database, for correctness checks.
    pub db: DatabaseConnection,
}

/// Days (from the seeded week's start) where each scenario books, so that
/// no two scenarios ever ask for the same interval.
pub mod days {
    /// Fan-out bookings (provider 0).
    pub const FANOUT: i64 = 7;
    /// Hot-slot intervals.
    pub const HOT: i64 = 10;
    /// Low-contention bookings, onwards.
    pub const BOOK: i64 = 14;
}
