//! Locations: where care happens, each in its own IANA time zone.

use crate::auth::Role;
use crate::error::{ServiceError, ServiceResult};
use crate::ids::LocationId;
use crate::notifications::config::{offsets_input, quiet_hours_input};
use crate::services::{Caller, Services};
use crate::validate;
use entity::location;
use sea_orm::{ActiveModelTrait, EntityTrait, IntoActiveModel, QueryOrder};

/// A location as shown to clients.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    /// Id.
    pub id: LocationId,
    /// Name.
    pub name: String,
    /// IANA time zone.
    pub time_zone: String,
    /// How long before the start a patient may still cancel or reschedule.
    pub cancel_notice_minutes: i32,
}

impl From<location::Model> for Location {
    fn from(row: location::Model) -> Self {
        Self {
            id: row.id.into(),
            name: row.name,
            time_zone: row.time_zone,
            cancel_notice_minutes: row.cancel_notice_minutes,
        }
    }
}

/// Input of `createLocation`.
#[derive(Clone, Debug)]
pub struct NewLocation {
    /// Name.
    pub name: String,
    /// IANA time zone.
    pub time_zone: String,
    /// Patients' notice window in minutes (default 1440, a day).
    pub cancel_notice_minutes: Option<i32>,
    /// Reminder offsets in minutes before the start; the deployment's when absent.
    pub reminder_offsets_minutes: Option<Vec<i32>>,
    /// SMS quiet hours, `HH:MM-HH:MM` local or `off`; the deployment's when absent.
    pub sms_quiet_hours: Option<String>,
}

impl Services {
    /// Creates a location (ADMIN).
    pub async fn create_location(&self, caller: &Caller, input: NewLocation) -> ServiceResult<Location> {
        caller.actor()?.require(&[Role::Admin])?;
        let name = validate::name("input.name", &input.name, 200)?;
        let zone = validate::time_zone("input.timeZone", &input.time_zone)?;
        let row = location::Model {
            id: LocationId::new().0,
            name,
            time_zone: zone.name().to_owned(),
            cancel_notice_minutes: match input.cancel_notice_minutes {
                None => 1440,
                Some(m) if (0..=60 * 24 * 30).contains(&m) => m,
                Some(_) => {
                    return Err(ServiceError::bad_input(
                        "input.cancelNoticeMinutes",
                        "must be between 0 and 43200",
                    ));
                }
            },
            reminder_offsets_minutes: input
                .reminder_offsets_minutes
                .as_deref()
                .map(|m| offsets_input("input.reminderOffsetsMinutes", m))
                .transpose()?,
            sms_quiet_hours: input
                .sms_quiet_hours
                .as_deref()
                .map(|q| quiet_hours_input("input.smsQuietHours", q))
                .transpose()?,
            created_at: self.clock.now(),
        };
        location::Entity::insert(row.clone().into_active_model().reset_all())
            .exec_without_returning(&self.db)
            .await?;
        Ok(row.into())
    }

    /// Every location, by name (any signed-in caller).
    pub async fn locations(&self, caller: &Caller) -> ServiceResult<Vec<Location>> {
        caller.actor()?;
        Ok(location::Entity::find()
            .order_by_asc(location::Column::Name)
            .order_by_asc(location::Column::Id)
            .all(&self.replica)
            .await?
            .into_iter()
            .map(Location::from)
            .collect())
    }
}
