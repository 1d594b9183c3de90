//! One channel of one job: the record that makes a send happen once.

use sea_orm::entity::prelude::*;

/// A row of `job_deliveries`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "job_deliveries")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub job_id: Uuid,
    /// `email` or `sms`.
    #[sea_orm(primary_key, auto_increment = false)]
    pub channel: String,
    /// sending, sent, failed or skipped.
    pub status: String,
    /// The job attempt that wrote this state.
    pub attempt: i32,
    /// The peer's id of the message (Twilio SID, Message-ID).
    pub provider_ref: Option<String>,
    /// Why it failed or was skipped; never PHI.
    pub error: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

/// Relations are resolved by explicit queries in `domain`.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
