//! Random tokens and constant-time comparison, for setup links, CSRF and API secrets.

/// `bytes` random bytes from the OS-seeded CSPRNG, hex-encoded.
pub fn random_hex(bytes: usize) -> String {
    let mut out = String::with_capacity(bytes * 2);
    for _ in 0..bytes.div_ceil(32) {
        for b in rand::random::<[u8; 32]>() {
            out.push_str(&format!("{b:02x}"));
        }
    }
    out.truncate(bytes * 2);
    out
}

/// Compares two secrets in time that depends only on their lengths, not their contents.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_have_the_asked_length_and_differ() {
        let a = random_hex(40);
        assert_eq!(a.len(), 80);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, random_hex(40));
    }

    #[test]
    fn constant_time_eq_compares_contents_and_lengths() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
