//! Appointments and holds last at most 480 minutes, as a database rule.
//!
//! An appointment or hold spans one appointment type's length, and a type
//! lasts 5 to 480 minutes (`domain::scheduling::MAX_APPOINTMENT_MINUTES`).
//! Reads of what occupies a window rely on that bound: they look for starts
//! after `from - 480 minutes` only, so an index range covers the window and
//! not a provider's whole history. The checks make a longer row impossible,
//! so the bound can never hide one. Existing rows are validated when the
//! constraint is added: a violation fails the migration loudly. PostgreSQL
//! only; SQLite cannot add a check to an existing table without rebuilding it
//! (there the service's validation is the rule).
//!
//! A later change of the maximum length needs a migration replacing these
//! checks and the constant together.

use sea_orm_migration::prelude::*;

/// See the module documentation.
#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &[&str] = &[
    "ALTER TABLE appointments ADD CONSTRAINT appointments_length_bound \
     CHECK (end_at <= start_at + interval '480 minutes')",
    "ALTER TABLE holds ADD CONSTRAINT holds_length_bound \
     CHECK (end_at <= start_at + interval '480 minutes')",
];

const DOWN: &[&str] = &[
    "ALTER TABLE holds DROP CONSTRAINT holds_length_bound",
    "ALTER TABLE appointments DROP CONSTRAINT appointments_length_bound",
];

crate::statements::statement_lists!(run_on_postgres);
