//! An agent's base URL: `http(s)://host[:port]`, nothing more. Credentials in it
//! (`user:password@`) are refused: the agent is authenticated by its bearer token, and a
//! password in a URL ends up on screens, in exports and in logs.

use super::FieldError;
use std::fmt;

/// A checked agent base URL, without a trailing slash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentUrl(String);

impl AgentUrl {
    pub fn parse(input: &str) -> Result<Self, FieldError> {
        let text = input.trim().trim_end_matches('/');
        let shape =
            || FieldError("Enter the agent's base URL, e.g. http://10.0.0.5:7070.".to_string());
        let url = url::Url::parse(text).map_err(|_| shape())?;
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            return Err(shape());
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(FieldError(
                "Leave the user name and password out of the URL: the agent is reached with \
                 its token alone."
                    .to_string(),
            ));
        }
        if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
            return Err(shape());
        }
        Ok(Self(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AgentUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A URL as it may be shown: any user name and password replaced by `***`. For URLs stored
/// before credentials were refused, and for addresses an agent redirects to.
pub fn redact(stored: &str) -> String {
    match url::Url::parse(stored) {
        Ok(mut url) if !url.username().is_empty() || url.password().is_some() => {
            let _ = url.set_password(None);
            let _ = url.set_username("***");
            let shown = url.to_string();
            // `Url` adds a slash to a bare origin; the stored form had none.
            if stored.ends_with('/') {
                shown
            } else {
                shown.trim_end_matches('/').to_string()
            }
        }
        Ok(_) => stored.to_string(),
        // Not a URL at all: show nothing of it but that it is not one, in case it is
        // half a credential.
        Err(_) if stored.contains('@') => "(an address that is not a valid URL)".to_string(),
        Err(_) => stored.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_base_url_is_accepted_without_its_trailing_slash() {
        for (input, stored) in [
            ("http://10.0.0.5:7070", "http://10.0.0.5:7070"),
            (
                " https://edge-1.example.com:7443/ ",
                "https://edge-1.example.com:7443",
            ),
            ("http://[::1]:7070", "http://[::1]:7070"),
        ] {
            assert_eq!(AgentUrl::parse(input).unwrap().as_str(), stored);
        }
    }

    #[test]
    fn credentials_in_the_url_are_refused_with_their_own_reason() {
        for input in [
            "http://admin:hunter2@10.0.0.5:7070",
            "https://admin@10.0.0.5:7070",
            "http://:secret@10.0.0.5:7070",
        ] {
            let err = AgentUrl::parse(input).unwrap_err().to_string();
            assert!(err.contains("user name and password"), "{input}: {err}");
        }
    }

    #[test]
    fn anything_but_a_bare_http_origin_is_refused() {
        for input in [
            "",
            "10.0.0.5:7070",
            "ftp://10.0.0.5",
            "http://10.0.0.5:7070/agent",
            "http://10.0.0.5:7070?x=1",
            "http://10.0.0.5:7070#top",
        ] {
            assert!(AgentUrl::parse(input).is_err(), "{input}");
        }
    }

    #[test]
    fn redaction_hides_the_user_and_password_and_keeps_the_rest() {
        assert_eq!(
            redact("http://admin:hunter2@10.0.0.5:7070"),
            "http://***@10.0.0.5:7070"
        );
        assert_eq!(
            redact("https://u:p@evil.example/x?y=1"),
            "https://***@evil.example/x?y=1"
        );
        assert_eq!(redact("http://10.0.0.5:7070"), "http://10.0.0.5:7070");
    }
}
