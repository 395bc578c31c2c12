//! Why input was refused, worded for the person who typed it: one reason ([`FieldError`])
//! or the reasons of a whole form by field name ([`FieldErrors`]). Every front end (the
//! portal's forms, the JSON API, the CLI) shows these; none of them defines its own.

use std::collections::BTreeMap;
use std::fmt;

/// Why a field was refused, worded for the person who typed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError(pub String);

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FieldError {}

/// Reasons input was refused, by field name; `""` is the whole form.
#[derive(Debug, Default)]
pub struct FieldErrors(BTreeMap<&'static str, String>);

impl FieldErrors {
    pub fn add(&mut self, field: &'static str, why: impl Into<String>) {
        self.0.entry(field).or_insert_with(|| why.into());
    }

    /// Keeps the value, or records why `field` was refused.
    pub fn check<T>(&mut self, field: &'static str, parsed: Result<T, FieldError>) -> Option<T> {
        parsed.map_err(|e| self.add(field, e.0)).ok()
    }

    pub fn get(&self, field: &str) -> Option<&str> {
        self.0.get(field).map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Adds `other`'s reasons for fields that have none yet.
    pub fn merge(&mut self, other: FieldErrors) {
        for (field, why) in other.0 {
            self.add(field, why);
        }
    }

    /// Every reason, by field name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (*k, v.as_str()))
    }

    /// The whole-form message (key `""`), shown above the fields.
    pub fn form_error(&self) -> Option<&str> {
        self.get("")
    }
}
