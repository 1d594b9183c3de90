//! Key rotation: re-encrypts rows written with older PHI keys under the newest
//! one, in small batches, each its own transaction. Resumable (it picks rows by
//! key id, so a rerun continues where a stop left off) and safe while the API
//! serves: a row changed meanwhile is skipped and taken by the next batch.

use crate::error::{ServiceError, ServiceResult};
use crate::services::Services;
use entity::{patient, user};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter, QuerySelect, TransactionTrait};

/// What a rotation run re-encrypted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rotation {
    /// Patient rows.
    pub patients: u64,
    /// User rows.
    pub users: u64,
}

impl Services {
    /// Re-encrypts every patient and user row not yet under the current key.
    pub async fn rotate_phi_keys(&self, batch: u64) -> ServiceResult<Rotation> {
        let current = self.keyring.current_key_id().to_owned();
        let patients = self
            .in_batches(
                async || {
                    Ok(patient::Entity::find()
                        .filter(patient::Column::PhiKeyId.ne(current.as_str()))
                        .limit(batch)
                        .all(&self.db)
                        .await?)
                },
                async |txn: &DatabaseTransaction, row: patient::Model| {
                    let id = row.id;
                    let open = |field: &str, data: &[u8]| {
                        self.keyring
                            .decrypt(&row.phi_key_id, field, id, data)
                            .map_err(ServiceError::internal)
                    };
                    let seal =
                        |field: &str, text: &str| self.keyring.encrypt(field, id, text).map_err(ServiceError::internal);
                    let name = seal("patients.name", &open("patients.name", &row.name_enc)?)?;
                    let birth = seal(
                        "patients.birth_date",
                        &open("patients.birth_date", &row.birth_date_enc)?,
                    )?;
                    let email = match &row.email_enc {
                        Some(e) => Some(seal("patients.email", &open("patients.email", e)?)?),
                        None => None,
                    };
                    let phone = match &row.phone_enc {
                        Some(p) => Some(seal("patients.phone", &open("patients.phone", p)?)?),
                        None => None,
                    };
                    // Only if nobody changed the row meanwhile (an update re-encrypts it anyway).
                    let changed = patient::Entity::update_many()
                        .col_expr(patient::Column::PhiKeyId, Expr::value(current.clone()))
                        .col_expr(patient::Column::NameEnc, Expr::value(name))
                        .col_expr(patient::Column::BirthDateEnc, Expr::value(birth))
                        .col_expr(patient::Column::EmailEnc, Expr::value(email))
                        .col_expr(patient::Column::PhoneEnc, Expr::value(phone))
                        .filter(patient::Column::Id.eq(id))
                        .filter(patient::Column::PhiKeyId.eq(row.phi_key_id.as_str()))
                        .filter(patient::Column::UpdatedAt.eq(row.updated_at))
                        .exec(txn)
                        .await?;
                    Ok(changed.rows_affected)
                },
            )
            .await?;
        let users = self
            .in_batches(
                async || {
                    Ok(user::Entity::find()
                        .filter(user::Column::PhiKeyId.ne(current.as_str()))
                        .limit(batch)
                        .all(&self.db)
                        .await?)
                },
                async |txn: &DatabaseTransaction, row: user::Model| {
                    let email = self
                        .keyring
                        .decrypt(&row.phi_key_id, "users.email", row.id, &row.email_enc)
                        .map_err(ServiceError::internal)?;
                    let sealed = self
                        .keyring
                        .encrypt("users.email", row.id, &email)
                        .map_err(ServiceError::internal)?;
                    let changed = user::Entity::update_many()
                        .col_expr(user::Column::PhiKeyId, Expr::value(current.clone()))
                        .col_expr(user::Column::EmailEnc, Expr::value(sealed))
                        .filter(user::Column::Id.eq(row.id))
                        .filter(user::Column::PhiKeyId.eq(row.phi_key_id.as_str()))
                        .filter(user::Column::UpdatedAt.eq(row.updated_at))
                        .exec(txn)
                        .await?;
                    Ok(changed.rows_affected)
                },
            )
            .await?;
        Ok(Rotation { patients, users })
    }

    /// Runs `rotate` on every row of each batch `fetch` answers, a batch per
    /// transaction, until a batch comes back empty; answers the rows changed.
    async fn in_batches<M>(
        &self,
        fetch: impl AsyncFn() -> ServiceResult<Vec<M>>,
        rotate: impl AsyncFn(&DatabaseTransaction, M) -> ServiceResult<u64>,
    ) -> ServiceResult<u64> {
        let mut changed = 0;
        loop {
            let rows = fetch().await?;
            if rows.is_empty() {
                return Ok(changed);
            }
            let txn = self.db.begin().await?;
            for row in rows {
                changed += rotate(&txn, row).await?;
            }
            txn.commit().await?;
        }
    }
}
