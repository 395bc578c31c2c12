//! Words for counts, so a message never reads "1 sessions ended" or "2 agent(s)".

/// `n` and the noun in the number it takes: `count(1, "session", "sessions")` is
/// "1 session", `count(3, …)` "3 sessions".
pub fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

#[cfg(test)]
mod tests {
    use super::count;

    #[test]
    fn one_is_singular_and_every_other_count_plural() {
        assert_eq!(count(1, "session", "sessions"), "1 session");
        assert_eq!(count(0, "session", "sessions"), "0 sessions");
        assert_eq!(count(2, "API token", "API tokens"), "2 API tokens");
    }
}
