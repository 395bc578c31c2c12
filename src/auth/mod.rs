//! Authentication building blocks that are not HTTP: password hashing and secret tokens.

pub mod password;
pub mod token;
