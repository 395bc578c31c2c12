//! Agent labels (`canary`, `eu`, …): short lowercase slugs an admin puts on agents, by which
//! a site can be served and a rollout staged. A list is typed as text, separated by spaces
//! or commas, and kept sorted without repeats, so the same labels always read the same.

use super::FieldError;

/// The longest label accepted.
pub const MAX_LABEL_LEN: usize = 32;
/// The most labels one agent or site may carry.
pub const MAX_LABELS: usize = 16;

/// The label of the agents a "canary first" rollout changes before the others.
pub const CANARY: &str = "canary";

/// Whether `label` is a slug: lowercase ASCII letters and digits, dashes inside.
fn is_slug(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= MAX_LABEL_LEN
        && label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !label.starts_with('-')
        && !label.ends_with('-')
}

/// Reads a list of labels as typed ("canary, eu"): sorted, each once. Refuses the first
/// label that is not a slug, naming it.
pub fn parse(input: &str) -> Result<Vec<String>, FieldError> {
    let mut labels = Vec::new();
    for label in input
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|l| !l.is_empty())
    {
        if !is_slug(label) {
            return Err(FieldError(format!(
                "“{label}” is not a label: use lowercase letters, digits and dashes, at most \
                 {MAX_LABEL_LEN} characters (e.g. canary, eu-west)."
            )));
        }
        labels.push(label.to_string());
    }
    labels.sort();
    labels.dedup();
    if labels.len() > MAX_LABELS {
        return Err(FieldError(format!("Give at most {MAX_LABELS} labels.")));
    }
    Ok(labels)
}

/// A stored list (space-separated, as [`join`] writes it).
pub fn stored(text: &str) -> Vec<String> {
    text.split_whitespace().map(str::to_string).collect()
}

/// A list as it is stored and shown: separated by single spaces.
pub fn join(labels: &[String]) -> String {
    labels.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_sorted_slugs_each_once() {
        assert_eq!(parse(" eu, canary  eu ").unwrap(), ["canary", "eu"]);
        assert_eq!(parse("").unwrap(), Vec::<String>::new());
        assert_eq!(parse("eu-west-2").unwrap(), ["eu-west-2"]);
        assert_eq!(stored(&join(&parse("b a").unwrap())), ["a", "b"]);
    }

    #[test]
    fn anything_but_a_lowercase_slug_is_refused_by_name() {
        for bad in ["EU", "eu_west", "-eu", "eu-", "é", "a/b", &"x".repeat(33)] {
            let why = parse(&format!("canary {bad}")).unwrap_err().0;
            assert!(why.contains(&format!("“{bad}”")), "{bad}: {why}");
        }
        let many: Vec<String> = (0..17).map(|i| format!("l{i}")).collect();
        assert!(parse(&many.join(" ")).is_err());
    }
}
