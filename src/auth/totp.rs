//! TOTP second factor (RFC 6238: SHA-1, 6 digits, 30 s steps, ±1 step of clock skew) and
//! single-use backup codes. Replay protection is the caller's: a matched step is returned so
//! it can be recorded and never accepted twice.

use totp_rs::{Builder, Secret, Totp};

/// The issuer shown in authenticator apps.
const ISSUER: &str = "Gatehouse";

/// A fresh random secret, base32 as authenticator apps expect.
pub fn new_secret() -> String {
    Secret::generate().to_base32()
}

fn totp(secret_base32: &str, account: &str) -> Option<Totp> {
    let secret = Secret::try_from_base32(secret_base32).ok()?;
    Builder::new()
        .with_secret(secret)
        .with_account_name(account)
        .with_issuer(Some(ISSUER))
        .with_skew(1)
        .build()
        .ok()
}

/// The time step a valid `code` belongs to, within ±1 step of `unix_time`.
pub(crate) fn matching_step(secret_base32: &str, code: &str, unix_time: u64) -> Option<u64> {
    let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    if code.len() != 6 || !code.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    totp(secret_base32, "account")?.check(&code, unix_time)
}

/// The code an authenticator shows at `unix_time` (tests and enrolment checks).
pub fn code_at(secret_base32: &str, unix_time: u64) -> Option<String> {
    Some(
        totp(secret_base32, "account")?
            .generate(unix_time)
            .to_string(),
    )
}

/// A PNG QR code of the `otpauth://` URL, base64-encoded for an inline `data:` image.
pub(crate) fn qr_png_base64(secret_base32: &str, account: &str) -> Option<String> {
    totp(secret_base32, account)?.to_qr_base64().ok()
}

/// The `otpauth://` URL, for apps that take a link instead of a picture.
pub(crate) fn otpauth_url(secret_base32: &str, account: &str) -> Option<String> {
    totp(secret_base32, account)?.to_url().ok()
}

/// How many backup codes a user gets at a time.
pub(crate) const BACKUP_CODE_COUNT: usize = 10;
/// Unambiguous characters: no 0/O, 1/I/L.
const BACKUP_ALPHABET: &[u8] = b"23456789ABCDEFGHJKMNPQRSTUVWXYZ";

/// Ten new codes in the form XXXX-XXXX (about 39 bits each).
pub(crate) fn new_backup_codes() -> Vec<String> {
    (0..BACKUP_CODE_COUNT)
        .map(|_| {
            let bytes = rand::random::<[u8; 8]>();
            let chars: String = bytes
                .iter()
                .map(|b| BACKUP_ALPHABET[usize::from(*b) % BACKUP_ALPHABET.len()] as char)
                .collect();
            format!("{}-{}", &chars[..4], &chars[4..])
        })
        .collect()
}

/// Canonical form of a typed backup code (upper case, dash restored), or None if it cannot
/// be one.
pub(crate) fn normalize_backup_code(input: &str) -> Option<String> {
    let chars: String = input
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .map(|c| c.to_ascii_uppercase())
        .collect();
    (chars.len() == 8 && chars.bytes().all(|b| BACKUP_ALPHABET.contains(&b)))
        .then(|| format!("{}-{}", &chars[..4], &chars[4..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_code_matches_its_own_step_and_its_neighbours_only() {
        let secret = new_secret();
        let t = 1_800_000_000;
        let step = t / 30;
        let now = code_at(&secret, t).unwrap();
        assert_eq!(matching_step(&secret, &now, t), Some(step));
        let previous = code_at(&secret, t - 30).unwrap();
        assert_eq!(matching_step(&secret, &previous, t), Some(step - 1));
        let next = code_at(&secret, t + 30).unwrap();
        assert_eq!(matching_step(&secret, &next, t), Some(step + 1));
        let stale = code_at(&secret, t - 90).unwrap();
        if stale != now && stale != previous && stale != next {
            assert_eq!(matching_step(&secret, &stale, t), None);
        }
        assert_eq!(matching_step(&secret, "12345", t), None);
        assert_eq!(matching_step(&secret, "abcdef", t), None);
    }

    #[test]
    fn the_qr_code_is_a_png() {
        let b64 = qr_png_base64(&new_secret(), "ada@example.com").unwrap();
        assert!(
            b64.starts_with("iVBORw0KGgo"),
            "base64 of the PNG signature"
        );
        let url = otpauth_url(&new_secret(), "ada@example.com").unwrap();
        assert!(
            url.starts_with("otpauth://totp/Gatehouse:ada%40example.com?"),
            "{url}"
        );
    }

    #[test]
    fn backup_codes_are_ten_distinct_xxxx_xxxx_codes() {
        let codes = new_backup_codes();
        assert_eq!(codes.len(), 10);
        let distinct: std::collections::HashSet<_> = codes.iter().collect();
        assert_eq!(distinct.len(), 10);
        for code in &codes {
            assert_eq!(code.len(), 9);
            assert_eq!(&code[4..5], "-");
            assert_eq!(normalize_backup_code(code).as_deref(), Some(code.as_str()));
        }
        assert_eq!(
            normalize_backup_code("abcd efgh").as_deref(),
            Some("ABCD-EFGH")
        );
        assert_eq!(
            normalize_backup_code("ABCD-EFG0"),
            None,
            "0 is not in the alphabet"
        );
        assert_eq!(normalize_backup_code("123456"), None);
    }
}
