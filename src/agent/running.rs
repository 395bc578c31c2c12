//! What Caddy really runs, against what this agent loaded: a fingerprint of Caddy's
//! `GET /config/`, taken right after each load and compared later, so a config loaded
//! straight into Caddy's admin API (bypassing the hub) shows as drift.
//!
//! The fingerprint is a SHA-256 over a canonical serialization of the parsed JSON (object
//! keys sorted, no whitespace), so neither key order nor formatting ever counts: only what
//! Caddy would run.

use sha2::{Digest, Sha256};
use std::fmt::Write as _;

/// SHA-256 (lowercase hex) of `json`'s canonical form; an error if it is not JSON.
pub(crate) fn fingerprint(json: &[u8]) -> Result<String, serde_json::Error> {
    let value: serde_json::Value = serde_json::from_slice(json)?;
    let mut canonical = Vec::with_capacity(json.len());
    write_canonical(&value, &mut canonical);
    Ok(hex(&Sha256::digest(&canonical)))
}

/// SHA-256 of bytes as they are. Caddy prints an unchanged config byte for byte the same
/// (Go's encoder sorts map keys), so this lets an unchanged body skip parsing.
pub(crate) fn raw_digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Objects with their keys in byte order and no whitespace anywhere. Scalars are written by
/// serde_json, whose output for a parsed value is deterministic. The depth is bounded by
/// serde_json's own recursion limit when parsing (128).
fn write_canonical(value: &serde_json::Value, out: &mut Vec<u8>) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                serde_json::to_writer(&mut *out, key).expect("writing to a Vec cannot fail");
                out.push(b':');
                write_canonical(item, out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        scalar => serde_json::to_writer(&mut *out, scalar).expect("writing to a Vec cannot fail"),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_order_and_whitespace_do_not_change_the_fingerprint() {
        let compact = br#"{"admin":{"listen":"127.0.0.1:2019"},"apps":{"http":{"servers":{"srv0":{"listen":[":80"],"routes":[{"match":[{"host":["a.example"]}]}]}}}}}"#;
        let shuffled = br#"
            {
              "apps": { "http": { "servers": { "srv0": {
                  "routes": [ { "match": [ { "host": [ "a.example" ] } ] } ],
                  "listen": [ ":80" ]
              } } } },
              "admin" : { "listen" : "127.0.0.1:2019" }
            }
        "#;
        assert_eq!(
            fingerprint(compact).unwrap(),
            fingerprint(shuffled).unwrap()
        );
    }

    #[test]
    fn any_change_in_content_changes_the_fingerprint() {
        let base = fingerprint(br#"{"a":[1,2],"b":"x"}"#).unwrap();
        for other in [
            &br#"{"a":[2,1],"b":"x"}"#[..],
            br#"{"a":[1,2],"b":"y"}"#,
            br#"{"a":[1,2],"b":"x","c":null}"#,
            br#"{"a":[1,2,3],"b":"x"}"#,
            br#"{"a":[1,2],"B":"x"}"#,
            br#"{"a":[1,2.5],"b":"x"}"#,
            br#"{"a":"[1,2]","b":"x"}"#,
        ] {
            assert_ne!(
                fingerprint(other).unwrap(),
                base,
                "{}",
                String::from_utf8_lossy(other)
            );
        }
    }

    #[test]
    fn nested_keys_are_sorted_at_every_level_and_strings_keep_their_escapes() {
        let a = fingerprint(br#"{"z":{"b":1,"a":{"y":"q\"\u00e9","x":[{"d":1,"c":2}]}}}"#);
        let b = fingerprint(
            "{ \"z\" : { \"a\" : { \"x\" : [ { \"c\" : 2 , \"d\" : 1 } ], \"y\" : \"q\\\"é\" }, \"b\" : 1 } }"
                .as_bytes(),
        );
        assert_eq!(a.unwrap(), b.unwrap());
    }

    #[test]
    fn null_and_an_empty_object_are_different_configs() {
        // Caddy answers `null` when it runs nothing at all.
        assert_ne!(fingerprint(b"null").unwrap(), fingerprint(b"{}").unwrap());
        assert_eq!(
            fingerprint(b"null\n").unwrap(),
            fingerprint(b" null").unwrap()
        );
    }

    #[test]
    fn what_is_not_json_has_no_fingerprint() {
        assert!(fingerprint(b"<html>bad gateway</html>").is_err());
        assert!(fingerprint(b"").is_err());
        assert!(fingerprint(br#"{"a":1"#).is_err());
    }

    #[test]
    fn the_fingerprint_is_lowercase_sha256_hex_of_the_canonical_form() {
        // sha256("{\"a\":1}")
        assert_eq!(
            fingerprint(b" { \"a\" : 1 } ").unwrap(),
            "015abd7f5cc57a2dd94b7590f04ad8084273905ee33ec5cebeae62276a97f862"
        );
    }
}
