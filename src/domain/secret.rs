//! A value that must never be printed, such as a token or a key from the configuration.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A value that must never be printed: Debug shows only whether it is set.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The secret itself; call only where it is used, never to log or render it.
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() {
            "Secret(unset)"
        } else {
            "Secret(***)"
        })
    }
}

/// Bytes of a secret key (AES-256).
pub const KEY_LEN: usize = 32;

/// The bytes of a secret key written as base64 (with or without padding) or as 64 hex digits.
pub fn key_bytes(text: &str) -> Result<[u8; KEY_LEN], String> {
    use base64::Engine;
    let text = text.trim();
    let bytes = if text.len() == 2 * KEY_LEN && text.chars().all(|c| c.is_ascii_hexdigit()) {
        (0..KEY_LEN)
            .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16))
            .collect::<Result<Vec<u8>, _>>()
            .map_err(|e| e.to_string())?
    } else {
        base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(text.trim_end_matches('='))
            .map_err(|_| "not base64 or hex".to_string())?
    };
    <[u8; KEY_LEN]>::try_from(bytes.as_slice()).map_err(|_| {
        format!(
            "a key is 32 bytes (44 base64 characters or 64 hex digits), this is {}",
            bytes.len()
        )
    })
}
