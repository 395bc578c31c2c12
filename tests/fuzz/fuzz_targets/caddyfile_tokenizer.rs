//! The Caddyfile tokenizer in both dialects, and `encode_arg`, which writes any string as one
//! Caddyfile token: it must lex back as exactly one token, with the very text given whenever
//! the documented exceptions (control characters, `{$`, a lone brace, a value holding both
//! `\` and a backtick) do not apply.
#![no_main]

use gatehouse_fuzz::domain::caddyfile::{LexOptions, encode_arg, tokenize_with};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for options in [
        LexOptions::CADDY_2_6,
        LexOptions::CADDY_2_7,
        LexOptions::CADDY_2_6.with_comments(),
        LexOptions::CADDY_2_7.with_comments(),
    ] {
        if let Ok(tokens) = tokenize_with(text, options) {
            let lines = text.split('\n').count();
            let mut previous = (0, 0);
            for t in &tokens {
                assert!(t.line >= 1 && t.line <= lines, "line {} of {lines}", t.line);
                assert!(t.column >= 1, "column {}", t.column);
                assert!((t.line, t.column) > previous, "tokens out of order: {t:?}");
                assert!(
                    text.contains(t.raw.as_str()),
                    "raw text not in the input: {t:?}"
                );
                previous = (t.line, t.column);
            }
        }
    }

    let encoded = encode_arg(text);
    for options in [LexOptions::CADDY_2_6, LexOptions::CADDY_2_7] {
        let tokens = tokenize_with(&encoded, options)
            .unwrap_or_else(|e| panic!("{encoded:?} does not lex: {e}"));
        assert_eq!(
            tokens.len(),
            1,
            "{text:?} encoded as {encoded:?}: {tokens:?}"
        );
        let exact = !text.chars().any(char::is_control)
            && !text.contains("{$")
            && text != "{"
            && text != "}"
            && !(text.contains('\\') && text.contains('`'));
        if exact {
            assert_eq!(tokens[0].text, text, "encoded as {encoded:?}");
        }
    }
});
