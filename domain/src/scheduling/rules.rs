//! Weekly availability, time off and closed dates.

use super::model::{NewTimeOff, WeeklyRuleInput};
use super::slots::{location_row, provider_exists};
use crate::auth::Role;
use crate::directory::Provider;
use crate::error::{ServiceError, ServiceResult};
use crate::events::{DomainEvent, SlotChangeReason, SlotEvent, SlotStatus};
use crate::ids::{LocationId, ProviderId};
use crate::services::{Caller, Services};
use chrono::{Duration, NaiveDate};
use entity::{availability_rule, location_closed_date, provider_location, time_off};
use sea_orm::{ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter};
use uuid::Uuid;

const MAX_RULES: usize = 70;
const MAX_TIME_OFF: Duration = Duration::days(366);
/// How far ahead an availability change is announced to subscribers.
const ANNOUNCE_AHEAD: Duration = Duration::days(400);

/// Parses `HH:MM` (00:00 to 24:00) into minutes after midnight.
fn parse_time(field: &str, text: &str) -> ServiceResult<u32> {
    let bad = || ServiceError::bad_input(field, format!("{text:?} is not a time HH:MM between 00:00 and 24:00"));
    let (h, m) = text.trim().split_once(':').ok_or_else(bad)?;
    if h.len() != 2 || m.len() != 2 {
        return Err(bad());
    }
    let (h, m): (u32, u32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if m >= 60 || h > 24 || (h == 24 && m != 0) {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

/// Validates rules: weekday 1-7, start before end, no two overlapping on a day.
pub(super) fn parse_rules(rules: &[WeeklyRuleInput]) -> ServiceResult<Vec<(i16, u32, u32)>> {
    if rules.len() > MAX_RULES {
        return Err(ServiceError::bad_input("rules", format!("at most {MAX_RULES} rules")));
    }
    let mut parsed: Vec<(i16, u32, u32)> = Vec::with_capacity(rules.len());
    for (i, rule) in rules.iter().enumerate() {
        if !(1..=7).contains(&rule.weekday) {
            return Err(ServiceError::bad_input(
                format!("rules.{i}.weekday"),
                "weekday must be 1 (Monday) to 7 (Sunday)",
            ));
        }
        let start = parse_time(&format!("rules.{i}.startTime"), &rule.start_time)?;
        let end = parse_time(&format!("rules.{i}.endTime"), &rule.end_time)?;
        if start >= end {
            return Err(ServiceError::bad_input(
                format!("rules.{i}.endTime"),
                "endTime must be after startTime",
            ));
        }
        let weekday = rule.weekday as i16;
        if parsed.iter().any(|(d, s, e)| *d == weekday && start < *e && *s < end) {
            return Err(ServiceError::bad_input(
                format!("rules.{i}"),
                "overlaps another rule of the same weekday",
            ));
        }
        parsed.push((weekday, start, end));
    }
    Ok(parsed)
}

impl Services {
    /// Replaces every weekly rule of the provider at the location (STAFF, ADMIN).
    pub async fn set_weekly_availability(
        &self,
        caller: &Caller,
        provider_id: ProviderId,
        location_id: LocationId,
        rules: Vec<WeeklyRuleInput>,
    ) -> ServiceResult<Provider> {
        caller.actor()?.require_manages(location_id)?;
        provider_exists(&self.db, provider_id).await?;
        location_row(&self.db, location_id.0).await?;
        let works_there = provider_location::Entity::find_by_id((provider_id.0, location_id.0))
            .one(&self.db)
            .await?;
        if works_there.is_none() {
            return Err(ServiceError::bad_input(
                "locationId",
                "the provider does not work at this location",
            ));
        }
        let parsed = parse_rules(&rules)?;
        let now = self.clock.now();
        let (_turn, txn) = self.begin_as_writer_of(provider_id).await?;
        availability_rule::Entity::delete_many()
            .filter(availability_rule::Column::ProviderId.eq(provider_id.0))
            .filter(availability_rule::Column::LocationId.eq(location_id.0))
            .exec(&txn)
            .await?;
        for (weekday, start, end) in parsed {
            availability_rule::ActiveModel {
                id: Set(Uuid::now_v7()),
                provider_id: Set(provider_id.0),
                location_id: Set(location_id.0),
                weekday: Set(weekday),
                start_minute: Set(start as i32),
                end_minute: Set(end as i32),
                created_at: Set(now),
            }
            .insert(&txn)
            .await?;
        }
        txn.commit().await?;
        self.publish([availability_changed(
            provider_id,
            now,
            now + ANNOUNCE_AHEAD,
            SlotStatus::Free,
        )])
        .await;
        self.providers_by_ids(&[provider_id])
            .await?
            .into_iter()
            .next()
            .ok_or(ServiceError::NotFound("provider"))
    }

    /// Blocks an interval of a provider (STAFF, ADMIN, or the provider themself).
    /// Existing appointments in it stay; the front desk decides about them.
    pub async fn add_time_off(&self, caller: &Caller, input: NewTimeOff) -> ServiceResult<bool> {
        let actor = caller.actor()?;
        match actor.role {
            Role::Admin | Role::Staff => {}
            Role::Provider if actor.provider_id == Some(input.provider_id) => {}
            _ => return Err(ServiceError::Forbidden),
        }
        provider_exists(&self.db, input.provider_id).await?;
        if let Some(scope) = actor.staff_scope() {
            // A front desk blocks the time of providers who work at its locations.
            let works_here = provider_location::Entity::find()
                .filter(provider_location::Column::ProviderId.eq(input.provider_id.0))
                .filter(provider_location::Column::LocationId.is_in(scope))
                .one(&self.db)
                .await?;
            if works_here.is_none() {
                return Err(ServiceError::Forbidden);
            }
        }
        if input.end <= input.start {
            return Err(ServiceError::bad_input("input.end", "end must be after start"));
        }
        if input.end - input.start > MAX_TIME_OFF {
            return Err(ServiceError::bad_input(
                "input.end",
                "time off may span at most 366 days",
            ));
        }
        let reason = input
            .reason
            .map(|r| r.trim().chars().take(500).collect::<String>())
            .filter(|r| !r.is_empty());
        time_off::ActiveModel {
            id: Set(Uuid::now_v7()),
            provider_id: Set(input.provider_id.0),
            start_at: Set(input.start),
            end_at: Set(input.end),
            reason: Set(reason),
            created_by: Set(Some(actor.user_id.0)),
            created_at: Set(self.clock.now()),
        }
        .insert(&self.db)
        .await?;
        self.publish([availability_changed(
            input.provider_id,
            input.start,
            input.end,
            SlotStatus::BusyUnavailable,
        )])
        .await;
        Ok(true)
    }

    /// Closes a location for a local date (a holiday) (STAFF, ADMIN). Idempotent.
    pub async fn add_closed_date(
        &self,
        caller: &Caller,
        location_id: LocationId,
        date: NaiveDate,
        reason: Option<String>,
    ) -> ServiceResult<bool> {
        caller.actor()?.require_manages(location_id)?;
        let location = location_row(&self.db, location_id.0).await?;
        let exists = location_closed_date::Entity::find_by_id((location_id.0, date))
            .one(&self.db)
            .await?;
        if exists.is_none() {
            location_closed_date::ActiveModel {
                location_id: Set(location_id.0),
                closed_on: Set(date),
                reason: Set(reason.map(|r| r.trim().chars().take(200).collect())),
            }
            .insert(&self.db)
            .await?;
        }
        let zone = super::store::zone(&location)?;
        let start =
            super::availability::Interval::new(day_start(zone, date), day_start(zone, date + Duration::days(1)));
        let providers = provider_location::Entity::find()
            .filter(provider_location::Column::LocationId.eq(location_id.0))
            .all(&self.db)
            .await?;
        self.publish(providers.into_iter().map(|p| {
            availability_changed(
                p.provider_id.into(),
                start.start,
                start.end,
                SlotStatus::BusyUnavailable,
            )
        }))
        .await;
        Ok(true)
    }
}

fn day_start(zone: chrono_tz::Tz, date: NaiveDate) -> chrono::DateTime<chrono::Utc> {
    use chrono::TimeZone;
    zone.from_local_datetime(&date.and_time(chrono::NaiveTime::MIN))
        .earliest()
        .map_or_else(|| date.and_time(chrono::NaiveTime::MIN).and_utc(), |t| t.to_utc())
}

fn availability_changed(
    provider: ProviderId,
    start: chrono::DateTime<chrono::Utc>,
    end: chrono::DateTime<chrono::Utc>,
    status: SlotStatus,
) -> DomainEvent {
    DomainEvent::Slot(SlotEvent {
        provider_id: provider,
        start,
        end,
        status,
        reason: SlotChangeReason::AvailabilityChanged,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(weekday: i32, start: &str, end: &str) -> WeeklyRuleInput {
        WeeklyRuleInput {
            weekday,
            start_time: start.into(),
            end_time: end.into(),
        }
    }

    #[test]
    fn times_and_rules_are_validated() {
        assert_eq!(parse_time("t", "09:30").expect("ok"), 570);
        assert_eq!(parse_time("t", "24:00").expect("ok"), 1440);
        for bad in ["9:30", "24:30", "12:60", "noon", "", "-1:00"] {
            assert!(parse_time("t", bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_rules(&[rule(1, "09:00", "12:00"), rule(1, "13:00", "17:00")])
                .expect("ok")
                .len(),
            2
        );
        let field = |r: ServiceResult<_>| match r {
            Err(ServiceError::BadInput { field, .. }) => field,
            _ => panic!("expected bad input"),
        };
        assert_eq!(field(parse_rules(&[rule(8, "09:00", "10:00")])), "rules.0.weekday");
        assert_eq!(field(parse_rules(&[rule(1, "10:00", "09:00")])), "rules.0.endTime");
        assert_eq!(
            field(parse_rules(&[rule(1, "09:00", "12:00"), rule(1, "11:00", "13:00")])),
            "rules.1"
        );
        assert_eq!(field(parse_rules(&[rule(1, "9", "12:00")])), "rules.0.startTime");
    }
}
