//! The shape of Gatehouse's `domain` module for the parts the fuzz targets use; each file is
//! the real one, so the targets test exactly what the hub and agent run.

#[path = "../../../../src/domain/access_log.rs"]
pub mod access_log;
#[path = "../../../../src/domain/account.rs"]
#[allow(dead_code)]
mod account;
#[path = "../../../../src/domain/caddyfile/mod.rs"]
pub mod caddyfile;
#[path = "../../../../src/domain/field.rs"]
#[allow(dead_code)]
mod field;
#[path = "../../../../src/domain/vhost/mod.rs"]
pub mod vhost;

pub use field::FieldError;
