//! The no-show sweep: a BOOKED appointment whose end passed more than the
//! grace period ago, with nobody having marked an arrival, becomes NOSHOW.

use super::availability::Interval;
use super::booking::{appointment_audit, events};
use super::model::Appointment;
use super::status::AppointmentStatus;
use crate::error::ServiceResult;
use crate::events::{AppointmentEventKind, SlotChangeReason, SlotStatus};
use crate::phi::AuditAction;
use crate::services::{Caller, Services};
use entity::{appointment, appointment_history};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    TransactionTrait,
};
use uuid::Uuid;

/// Most appointments one sweep marks; the next sweep takes the rest.
const BATCH: u64 = 500;

impl Services {
    /// Marks overdue BOOKED appointments NOSHOW, each in its own transaction with
    /// its history and audit records, and announces them. Safe with several
    /// workers: the version check lets exactly one of them change each row.
    pub async fn sweep_no_shows(&self) -> ServiceResult<u64> {
        let now = self.clock.now();
        let overdue = appointment::Entity::find()
            .filter(appointment::Column::Status.eq(AppointmentStatus::Booked.code()))
            .filter(appointment::Column::EndAt.lte(now - self.policy.noshow_grace))
            .order_by_asc(appointment::Column::EndAt)
            .limit(BATCH)
            .all(&self.db)
            .await?;
        let mut marked = 0;
        for row in overdue {
            let txn = self.db.begin().await?;
            let changed = appointment::Entity::update_many()
                .col_expr(
                    appointment::Column::Status,
                    Expr::value(AppointmentStatus::Noshow.code()),
                )
                .col_expr(appointment::Column::Version, Expr::value(row.version + 1))
                .col_expr(appointment::Column::UpdatedAt, Expr::value(now))
                .filter(appointment::Column::Id.eq(row.id))
                .filter(appointment::Column::Version.eq(row.version))
                .filter(appointment::Column::Status.eq(AppointmentStatus::Booked.code()))
                .exec(&txn)
                .await?;
            if changed.rows_affected != 1 {
                continue;
            }
            let updated = appointment::Model {
                status: AppointmentStatus::Noshow.code().to_owned(),
                version: row.version + 1,
                updated_at: now,
                ..row
            };
            appointment_history::ActiveModel {
                id: Set(Uuid::now_v7()),
                appointment_id: Set(updated.id),
                changed_at: Set(now),
                actor_user_id: Set(None),
                action: Set(AppointmentStatus::Noshow.code().to_owned()),
                from_status: Set(Some(AppointmentStatus::Booked.code().to_owned())),
                to_status: Set(updated.status.clone()),
                old_start_at: Set(None),
                old_end_at: Set(None),
                new_start_at: Set(updated.start_at),
                new_end_at: Set(updated.end_at),
                note: Set(Some(format!(
                    "no arrival recorded {} minutes after the end",
                    self.policy.noshow_grace.num_minutes()
                ))),
            }
            .insert(&txn)
            .await?;
            self.audit(
                &txn,
                &Caller::default(),
                appointment_audit(AuditAction::Update, updated.id, Some("noshow-sweep")),
            )
            .await?;
            self.plan_status_changed(&txn, &updated, AppointmentStatus::Noshow)
                .await?;
            txn.commit().await?;
            marked += 1;
            let appointment = Appointment::try_from(updated)?;
            let freed = (
                Interval::new(appointment.start, appointment.end),
                SlotStatus::Free,
                SlotChangeReason::Released,
            );
            self.publish(events(&appointment, AppointmentEventKind::Updated, &[freed]))
                .await;
        }
        Ok(marked)
    }
}
