//! A clinic location with its IANA time zone.

use sea_orm::entity::prelude::*;

/// A row of `locations`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "locations")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub name: String,
    /// IANA zone name, e.g. `America/New_York`.
    pub time_zone: String,
    /// How long before the start a patient may still cancel or reschedule.
    pub cancel_notice_minutes: i32,
    /// Minutes before the start at which reminders go out, e.g. `1440,120`;
    /// the deployment default when absent.
    pub reminder_offsets_minutes: Option<String>,
    /// Local `HH:MM-HH:MM` during which no SMS is sent, or `off`; the
    /// deployment default when absent.
    pub sms_quiet_hours: Option<String>,
    pub created_at: DateTimeUtc,
}

/// Relations are resolved by explicit queries in `domain`.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
