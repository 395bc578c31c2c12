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

/// Compares two secrets without telling their contents or the expected one's length by
/// timing: both sides are reduced to their SHA-256 digests (a fixed 32 bytes, whatever was
/// sent) and the digests are compared with no early exit. Equal digests mean equal inputs.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    digests_equal(&digest(a), &digest(b))
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes).into()
}

/// Fixed-length comparison: every byte is looked at, whatever differs.
fn digests_equal(a: &[u8; 32], b: &[u8; 32]) -> bool {
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
        assert!(!constant_time_eq(b"", b"a"));
        assert!(constant_time_eq(b"", b""));
        let long = random_hex(100);
        assert!(constant_time_eq(long.as_bytes(), long.clone().as_bytes()));
        assert!(!constant_time_eq(long.as_bytes(), &long.as_bytes()[..199]));
    }

    #[test]
    fn what_is_compared_has_one_length_whatever_the_inputs() {
        // The byte-by-byte loop only ever sees two 32-byte digests, so a guess of the wrong
        // length costs the same as one of the right length (timing itself is not asserted).
        for (a, b) in [
            (&b"x"[..], &b"a much longer secret value"[..]),
            (b"", b"abc"),
        ] {
            let (da, db) = (digest(a), digest(b));
            assert_eq!((da.len(), db.len()), (32, 32));
            assert!(!digests_equal(&da, &db));
        }
        let mut d = digest(b"metrics-token");
        assert!(digests_equal(&d, &digest(b"metrics-token")));
        d[31] ^= 1;
        assert!(!digests_equal(&d, &digest(b"metrics-token")));
    }
}
