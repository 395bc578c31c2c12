//! Authentication building blocks that are not HTTP: password hashing, TOTP and backup
//! codes, random tokens, and the login rate limiter.

pub mod password;
pub(crate) mod ratelimit;
pub mod token;
pub mod totp;
