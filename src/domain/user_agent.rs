//! A browser's `User-Agent` as people say it: "Firefox on Linux", not the raw string.

use woothee::parser::Parser;

/// The browser and its system, as far as the string tells them: "Safari on iPhone",
/// "Firefox on Linux", or, for a program that is no known browser, its own name ("curl").
pub fn describe(user_agent: &str) -> String {
    let known = |s: &str| !s.is_empty() && s != woothee::woothee::VALUE_UNKNOWN;
    // Crawlers and HTTP libraries come out as a category ("HTTP Library"): their own name says more.
    let browser =
        |category: &str| matches!(category, "pc" | "smartphone" | "mobilephone" | "appliance");
    match Parser::new().parse(user_agent) {
        Some(r) if browser(r.category) && known(r.name) && known(r.os) => {
            format!("{} on {}", r.name, r.os)
        }
        Some(r) if browser(r.category) && known(r.name) => r.name.to_string(),
        _ => program(user_agent),
    }
}

/// The first product token (`curl/8.5.0` is "curl"), at most 40 characters.
fn program(user_agent: &str) -> String {
    let first = user_agent.split_whitespace().next().unwrap_or_default();
    let name = first.split('/').next().unwrap_or_default();
    match name.chars().take(40).collect::<String>() {
        n if n.is_empty() => "Unknown browser".into(),
        n => n,
    }
}

#[cfg(test)]
mod tests {
    use super::describe;

    #[test]
    fn browsers_read_as_a_name_and_a_system() {
        let cases = [
            (
                "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
                "Firefox on Linux",
            ),
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) \
                 Chrome/131.0.0.0 Safari/537.36",
                "Chrome on Windows 10",
            ),
            (
                "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 \
                 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
                "Safari on iPhone",
            ),
            ("curl/8.5.0", "curl"),
            ("", "Unknown browser"),
        ];
        for (ua, said) in cases {
            assert_eq!(describe(ua), said, "{ua}");
        }
    }
}
