//! Pure types and rules of Gatehouse. Nothing here knows about HTTP or SQLite, so every
//! rule can be unit-tested on its own.

pub mod access_log;
mod account;
pub(crate) mod agent_url;
pub mod caddyfile;
mod field;
pub mod labels;
mod role;
pub mod secret;
pub mod tenant;
pub mod tenant_lists;
pub(crate) mod tls;
pub mod user_agent;
pub mod vhost;
pub mod words;

pub use account::{DisplayName, Email, Password};
pub use field::{FieldError, FieldErrors};
pub use role::Role;
pub use secret::Secret;
