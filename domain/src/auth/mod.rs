//! Authentication and authorization: passwords, tokens, roles, the acting user.

mod actor;
mod password;
mod revocation;
mod service;
mod sessions;
mod throttle;
mod tokens;

pub use actor::{Actor, Role};
pub use password::{PasswordHasher, validate_new_password};
pub use revocation::revoked_session_key;
pub(crate) use service::NewUser;
pub use service::{AuthSession, User};
pub use tokens::{AccessClaims, TokenKeys};
