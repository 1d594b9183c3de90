//! A person who signs in. The email is PHI for patients, so it is stored encrypted for everyone, with a keyed hash for lookup.

use sea_orm::entity::prelude::*;

/// A row of `users`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "users")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// Keyed hash (blind index) of the normalized email.
    pub email_bidx: String,
    /// AES-256-GCM ciphertext of the email.
    pub email_enc: Vec<u8>,
    pub phi_key_id: String,
    /// Argon2id PHC string.
    pub password_hash: String,
    /// ADMIN, STAFF, PROVIDER or PATIENT.
    pub role: String,
    pub provider_id: Option<Uuid>,
    pub patient_id: Option<Uuid>,
    pub disabled: bool,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

/// Relations are resolved by explicit queries in `domain`.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
