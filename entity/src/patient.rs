//! A patient. Every PHI field is ciphertext; lookups go through keyed hashes.

use sea_orm::entity::prelude::*;

/// A row of `patients`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "patients")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// Id of the key that encrypted this row's fields.
    pub phi_key_id: String,
    pub name_enc: Vec<u8>,
    pub birth_date_enc: Vec<u8>,
    pub email_enc: Option<Vec<u8>>,
    pub phone_enc: Option<Vec<u8>>,
    pub email_bidx: Option<String>,
    pub phone_bidx: Option<String>,
    /// The patient accepts email notifications.
    pub notify_email: bool,
    /// The patient accepts SMS notifications.
    pub notify_sms: bool,
    /// Where the patient was registered; STAFF of that location see them.
    pub home_location_id: Option<Uuid>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

/// Relations are resolved by explicit queries in `domain`.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
