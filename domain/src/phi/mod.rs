//! Protected health information: field encryption, blind indexes, audit records.

mod audit;
mod keyring;

pub use audit::{AuditAction, AuditRecord, RequestMeta, write_audit};
pub(crate) use keyring::hex_digest;
pub use keyring::{Keyring, KeyringError, decode_key};
