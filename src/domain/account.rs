//! Validated account fields: an email address, a display name and a new password.
//! Each is parsed once at the edge, so the rest of the code can trust it.

use super::FieldError;
use std::fmt;

fn refuse<T>(why: impl Into<String>) -> Result<T, FieldError> {
    Err(FieldError(why.into()))
}

/// An email address, trimmed and lower-cased so it compares the way people expect.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

impl Email {
    pub fn parse(input: &str) -> Result<Self, FieldError> {
        let email = input.trim().to_lowercase();
        if email.is_empty() {
            return refuse("Enter an email address.");
        }
        if email.len() > 254 {
            return refuse("That email address is too long.");
        }
        let Some((local, domain)) = email.rsplit_once('@') else {
            return refuse("An email address needs an @.");
        };
        let domain_ok = domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && domain.split('.').all(|label| !label.is_empty())
            && domain
                .chars()
                .all(|c| c.is_alphanumeric() || c == '-' || c == '.');
        let local_ok = !local.is_empty()
            && local.len() <= 64
            && !local.contains('@')
            && local
                .chars()
                .all(|c| !c.is_whitespace() && !c.is_control() && c != '<' && c != '>');
        if !local_ok || !domain_ok {
            return refuse("That does not look like an email address.");
        }
        Ok(Self(email))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A person's display name: 1 to 100 printable characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplayName(String);

impl DisplayName {
    pub fn parse(input: &str) -> Result<Self, FieldError> {
        let name = input.trim();
        if name.is_empty() {
            return refuse("Enter a name.");
        }
        if name.chars().count() > 100 {
            return refuse("Names are at most 100 characters.");
        }
        if name.chars().any(char::is_control) {
            return refuse("Names cannot contain control characters.");
        }
        Ok(Self(name.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A new password that meets the policy. Never printed: Debug hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    pub const MIN_CHARS: usize = 12;
    /// argon2 cost grows with input; a cap keeps a login from becoming a CPU sink.
    pub const MAX_BYTES: usize = 256;

    pub fn parse(input: &str) -> Result<Self, FieldError> {
        if input.chars().count() < Self::MIN_CHARS {
            return refuse(format!("Use at least {} characters.", Self::MIN_CHARS));
        }
        if input.len() > Self::MAX_BYTES {
            return refuse(format!("Use at most {} bytes.", Self::MAX_BYTES));
        }
        if input.trim().is_empty() {
            return refuse("A password cannot be only spaces.");
        }
        Ok(Self(input.to_string()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised_and_junk_is_refused() {
        assert_eq!(
            Email::parse("  Ada@Example.COM ").unwrap().as_str(),
            "ada@example.com"
        );
        for junk in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@example",
            "a b@example.com",
            "ada@ex..com",
            "<a>@x.io",
        ] {
            assert!(Email::parse(junk).is_err(), "{junk:?} should be refused");
        }
    }

    #[test]
    fn display_names_are_trimmed_and_bounded() {
        assert_eq!(
            DisplayName::parse("  Ada Lovelace ").unwrap().as_str(),
            "Ada Lovelace"
        );
        assert!(DisplayName::parse("   ").is_err());
        assert!(DisplayName::parse(&"x".repeat(101)).is_err());
        assert!(DisplayName::parse("bell\u{7}").is_err());
    }

    #[test]
    fn passwords_follow_the_policy_and_never_print() {
        assert!(Password::parse("short").is_err());
        assert!(Password::parse(&" ".repeat(20)).is_err());
        assert!(Password::parse(&"x".repeat(300)).is_err());
        let p = Password::parse("correct horse battery").unwrap();
        assert_eq!(format!("{p:?}"), "Password(***)");
    }
}
