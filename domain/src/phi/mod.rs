//! Protected health information: field encryption, blind indexes, audit records.

mod audit;
mod chain;
mod events;
mod keyring;
mod rotation;

pub use audit::{AuditAction, AuditRecord, RequestMeta, write_audit, write_audits, write_audits_of};
pub use chain::{ChainCheck, GENESIS, chain_pending, record_hash, verify_chain};
/// One stored audit record, as `auditEvents` lists it.
pub use entity::audit_log::Model as AuditEntry;
pub use events::AuditFilter;
pub(crate) use keyring::hex_digest;
pub use keyring::{Keyring, KeyringError, decode_key};
pub use rotation::Rotation;
