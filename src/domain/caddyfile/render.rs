//! Pure, deterministic rendering of a complete Caddyfile from validated parts, plus a stable
//! content hash, so that the same inputs always yield byte-identical, `caddy fmt`-clean output
//! that can be compared across runs and machines.

use super::body::{CaddyfileBody, push_tabs};

/// Options for the global block. Values are written as single Caddyfile tokens (quoted when
/// needed), so an odd value cannot add tokens or braces; see [`render`] for the caveats.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GlobalOptions {
    /// `admin` listen address, e.g. `localhost:2019` or `off`.
    pub admin: Option<String>,
    /// ACME account email.
    pub email: Option<String>,
    /// File for Caddy's own (non-access) log, written as JSON.
    pub caddy_log: Option<String>,
    /// Admin-supplied extra global options, already validated as a body.
    pub extra: Option<CaddyfileBody>,
}

/// One site. `address` must already be validated (a host, optionally with scheme and port);
/// rendering keeps it a single token but does not judge what it means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SiteBlock<'a> {
    pub address: &'a str,
    pub body: &'a CaddyfileBody,
}

/// The JSON access log every site writes to, with size-based rotation. A zero size or count leaves the choice
/// to Caddy's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLog {
    pub path: String,
    pub roll_size_mb: u32,
    pub roll_keep: u32,
}

/// Renders the whole Caddyfile: the global block (omitted when empty), then the sites sorted
/// by address, separated by one blank line, ending with a single newline.
///
/// String options and addresses go through [`encode_arg`]; a value that cannot be written as
/// one token exactly (control characters, `{$`, which Caddy expands before parsing, or a
/// bare brace) is altered rather than allowed to change the file's structure. Callers should
/// validate those values first so that this never happens.
pub fn render(
    global: &GlobalOptions,
    sites: &[SiteBlock<'_>],
    access_log: Option<&AccessLog>,
) -> String {
    let mut out = String::new();

    let mut options = String::new();
    if let Some(admin) = &global.admin {
        directive(&mut options, 1, &["admin", &encode_arg(admin)]);
    }
    if let Some(email) = &global.email {
        directive(&mut options, 1, &["email", &encode_arg(email)]);
    }
    if global.caddy_log.is_some() || access_log.is_some() {
        directive(&mut options, 1, &["log", "{"]);
        if let Some(path) = &global.caddy_log {
            directive(&mut options, 2, &["output", "file", &encode_arg(path)]);
            directive(&mut options, 2, &["format", "json"]);
        }
        if access_log.is_some() {
            directive(&mut options, 2, &["exclude", ACCESS_LOGGER]);
        }
        directive(&mut options, 1, &["}"]);
    }
    if let Some(log) = access_log {
        write_access_log(&mut options, log);
    }
    if let Some(extra) = &global.extra {
        extra.write_indented(&mut options, 1);
    }
    if !options.is_empty() {
        out.push_str("{\n");
        out.push_str(&options);
        out.push_str("}\n");
    }

    let mut sorted: Vec<&SiteBlock<'_>> = sites.iter().collect();
    // The body breaks ties so that duplicate addresses still render in one fixed order.
    sorted.sort_by(|a, b| (a.address, a.body.as_str()).cmp(&(b.address, b.body.as_str())));
    for site in sorted {
        if !out.is_empty() {
            out.push('\n');
        }
        write_site(&mut out, site, access_log.is_some());
    }
    out
}

/// The block of one site alone, as it appears in [`render`]'s output.
pub fn render_site(site: &SiteBlock<'_>, access_logged: bool) -> String {
    let mut out = String::new();
    write_site(&mut out, site, access_logged);
    out
}

fn write_site(out: &mut String, site: &SiteBlock<'_>, access_logged: bool) {
    directive(out, 0, &[&encode_arg(site.address), "{"]);
    site.body.write_indented(out, 1);
    if access_logged {
        // A bare `log` switches access logging on for this host and sends it to Caddy's
        // shared `http.log.access` logger, which the global `log access` writes to the file.
        directive(out, 1, &["log"]);
    }
    out.push_str("}\n");
}

/// The name under which Caddy emits access log entries of sites whose `log` has no options.
const ACCESS_LOGGER: &str = "http.log.access";

/// One global logger for every site's access log. Caddy 2.6 builds a separate logger for
/// each site-level `log` block that has options, which makes loading thousands of sites
/// about five times slower; a bare `log` per site plus this shared logger costs nothing
/// measurable (see benches/BENCHMARKS.md, "Access logging at scale").
fn write_access_log(out: &mut String, log: &AccessLog) {
    directive(out, 1, &["log", "access", "{"]);
    directive(out, 2, &["output", "file", &encode_arg(&log.path), "{"]);
    // Caddy reads sizes with go-humanize; MiB matches the megabytes lumberjack rotates by.
    directive(out, 3, &["roll_size", &format!("{}MiB", log.roll_size_mb)]);
    directive(out, 3, &["roll_keep", &log.roll_keep.to_string()]);
    directive(out, 2, &["}"]);
    directive(out, 2, &["format", "json"]);
    directive(out, 2, &["include", ACCESS_LOGGER]);
    directive(out, 1, &["}"]);
}

fn directive(out: &mut String, depth: usize, tokens: &[&str]) {
    push_tabs(out, depth);
    out.push_str(&tokens.join(" "));
    out.push('\n');
}

/// Writes `value` as exactly one Caddyfile token whose text is `value`, whenever that is
/// possible: bare when it is plain, else double-quoted (only `\"` is an escape there), else
/// backtick-quoted (no escapes at all). Impossible values are altered, never left able to
/// change the structure: control characters are dropped, `{$` becomes `{ $`, a lone brace is
/// escaped, and backslashes become `/` in the rare value that fits neither kind of quote.
pub fn encode_arg(value: &str) -> String {
    let mut value: String = value.chars().filter(|c| !c.is_control()).collect();
    while value.contains("{$") {
        value = value.replace("{$", "{ $");
    }
    if value.is_empty() {
        return "\"\"".to_string();
    }
    if value == "{" || value == "}" {
        // Caddy's parser treats a token whose text is a brace as a brace, quoted or not.
        return format!("\\{value}");
    }
    let plain = value
        .chars()
        .all(|c| !c.is_whitespace() && !"\"`{}#\\<".contains(c));
    if plain {
        return value;
    }
    if !value.contains('\\') {
        return format!("\"{}\"", value.replace('"', "\\\""));
    }
    if !value.contains('`') {
        return format!("`{value}`");
    }
    format!("\"{}\"", value.replace('\\', "/").replace('"', "\\\""))
}

/// Lowercase hex SHA-256 of the rendered text; identical on every platform and run.
pub fn config_hash(rendered: &str) -> String {
    sha256(rendered.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// FIPS 180-4 SHA-256, written out because this module may not depend on crates.
fn sha256(data: &[u8]) -> [u8; 32] {
    const K: [u32; 64] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
        0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
        0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
        0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
        0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
        0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
        0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
        0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2,
    ];
    let mut h: [u32; 8] = [
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
        0x5be0cd19,
    ];

    let mut message = data.to_vec();
    let bit_len = (data.len() as u64).wrapping_mul(8);
    message.push(0x80);
    while message.len() % 64 != 56 {
        message.push(0);
    }
    message.extend_from_slice(&bit_len.to_be_bytes());

    for chunk in message.chunks_exact(64) {
        let mut w = [0u32; 64];
        for (i, word) in chunk.chunks_exact(4).enumerate() {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..64 {
            let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
            let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16]
                .wrapping_add(s0)
                .wrapping_add(w[i - 7])
                .wrapping_add(s1);
        }
        let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut hh] = h;
        for i in 0..64 {
            let s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
            let ch = (e & f) ^ (!e & g);
            let t1 = hh
                .wrapping_add(s1)
                .wrapping_add(ch)
                .wrapping_add(K[i])
                .wrapping_add(w[i]);
            let s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
            let maj = (a & b) ^ (a & c) ^ (b & c);
            let t2 = s0.wrapping_add(maj);
            hh = g;
            g = f;
            f = e;
            e = d.wrapping_add(t1);
            d = c;
            c = b;
            b = a;
            a = t1.wrapping_add(t2);
        }
        for (state, add) in h.iter_mut().zip([a, b, c, d, e, f, g, hh]) {
            *state = state.wrapping_add(add);
        }
    }

    let mut digest = [0u8; 32];
    for (out, word) in digest.chunks_exact_mut(4).zip(h) {
        out.copy_from_slice(&word.to_be_bytes());
    }
    digest
}

#[cfg(test)]
mod tests {
    use super::super::body::BodyPolicy;
    use super::super::lexer::{LexOptions, Token, tokenize, tokenize_with};
    use super::*;

    fn body(text: &str) -> CaddyfileBody {
        CaddyfileBody::parse(text, &BodyPolicy::admin()).unwrap()
    }

    #[test]
    fn an_empty_global_block_is_omitted_and_sites_are_sorted() {
        let (a, b) = (
            body("respond a"),
            body("reverse_proxy localhost:8080 {\n\theader_up X-Y z\n}"),
        );
        let sites = [
            SiteBlock {
                address: "zeta.example.com",
                body: &a,
            },
            SiteBlock {
                address: "http://alpha.localhost:8080",
                body: &b,
            },
        ];
        assert_eq!(
            render(&GlobalOptions::default(), &sites, None),
            "http://alpha.localhost:8080 {\n\treverse_proxy localhost:8080 {\n\t\theader_up X-Y z\n\t}\n}\n\nzeta.example.com {\n\trespond a\n}\n"
        );
    }

    #[test]
    fn global_options_come_first() {
        let global = GlobalOptions {
            admin: Some("localhost:2019".into()),
            email: Some("ops@example.com".into()),
            caddy_log: Some("/var/log/caddy/caddy.log".into()),
            extra: Some(body("servers {\n\tprotocols h1 h2\n}")),
        };
        let empty = CaddyfileBody::default();
        let sites = [SiteBlock {
            address: "example.com",
            body: &empty,
        }];
        assert_eq!(
            render(&global, &sites, None),
            "{\n\tadmin localhost:2019\n\temail ops@example.com\n\tlog {\n\t\toutput file /var/log/caddy/caddy.log\n\t\tformat json\n\t}\n\tservers {\n\t\tprotocols h1 h2\n\t}\n}\n\nexample.com {\n}\n"
        );
    }

    #[test]
    fn each_site_gets_a_rotating_json_access_log() {
        let b = body("respond ok");
        let sites = [SiteBlock {
            address: "example.com",
            body: &b,
        }];
        let log = AccessLog {
            path: "/var/log/caddy/access.log".into(),
            roll_size_mb: 50,
            roll_keep: 7,
        };
        assert_eq!(
            render(&GlobalOptions::default(), &sites, Some(&log)),
            "{\n\tlog {\n\t\texclude http.log.access\n\t}\n\tlog access {\n\t\toutput file /var/log/caddy/access.log {\n\t\t\troll_size 50MiB\n\t\t\troll_keep 7\n\t\t}\n\t\tformat json\n\t\tinclude http.log.access\n\t}\n}\n\nexample.com {\n\trespond ok\n\tlog\n}\n"
        );
    }

    #[test]
    fn nothing_to_render_is_an_empty_string() {
        assert_eq!(render(&GlobalOptions::default(), &[], None), "");
    }

    #[test]
    fn option_values_are_always_a_single_token() {
        assert_eq!(encode_arg("/var/log/caddy.log"), "/var/log/caddy.log");
        assert_eq!(
            encode_arg("/var/log/my logs/a.log"),
            "\"/var/log/my logs/a.log\""
        );
        assert_eq!(encode_arg("a\"b }"), "\"a\\\"b }\"");
        assert_eq!(encode_arg("C:\\logs\\a b"), "`C:\\logs\\a b`");
        assert_eq!(encode_arg(""), "\"\"");
        assert_eq!(encode_arg("}"), "\\}");
        assert_eq!(encode_arg("x\n}\nevil {"), "\"x}evil {\"");
        assert_eq!(encode_arg("/tmp/{$HOME"), "\"/tmp/{ $HOME\"");
        assert_eq!(encode_arg("#x"), "\"#x\"");
        assert_eq!(encode_arg("<<EOF"), "\"<<EOF\"");
        for value in [
            "a b", "a\"b", "x\\\"y`", "tail\\", "`\\", "\t{\u{0}", "{", "\"", "#",
        ] {
            let encoded = encode_arg(value);
            let tokens = tokenize(&encoded).unwrap();
            assert_eq!(tokens.len(), 1, "{value:?} -> {encoded:?}");
            assert!(tokens[0].text != "{" && tokens[0].text != "}");
        }
    }

    #[test]
    fn config_hash_is_sha256_hex() {
        assert_eq!(
            config_hash(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            config_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let long = "a".repeat(1000);
        assert_eq!(
            config_hash(&long),
            "41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3"
        );
    }

    /// Caddy's parse-time `{$NAME}` / `{$NAME:default}` substitution (parse.go
    /// `replaceEnvVars`) with an empty environment.
    fn replace_env_vars(input: &str) -> String {
        let mut out = input.to_string();
        let mut offset = 0;
        while let Some(begin) = out[offset..].find("{$").map(|b| b + offset) {
            let Some(end) = out[begin + 2..].find('}').map(|e| e + begin + 2) else {
                break;
            };
            let name = &out[begin + 2..end];
            if name.is_empty() {
                offset = end + 1;
                continue;
            }
            let value = name.split_once(':').map_or("", |(_, d)| d).to_string();
            out.replace_range(begin..=end, &value);
            offset = begin + value.len();
        }
        out
    }

    /// The server-block keys Caddy's parser (parse.go `parseAll`) finds in a whole file, or why
    /// it would refuse the file.
    fn caddy_server_blocks(tokens: &[Token]) -> Result<Vec<Vec<String>>, String> {
        let new_line = |i: usize| i == 0 || tokens[i - 1].next_is_on_new_line(&tokens[i]);
        let mut blocks = Vec::new();
        let mut i = 0;
        while i < tokens.len() {
            let mut keys = Vec::new();
            loop {
                let t = &tokens[i];
                if t.text == "import" && new_line(i) {
                    return Err(format!("import at address level, line {}", t.line));
                }
                if t.text == "{" {
                    break;
                }
                keys.push(t.text.trim_end_matches(',').to_string());
                i += 1;
                if i == tokens.len() || new_line(i) {
                    return Err(format!("site {keys:?} without a block"));
                }
            }
            i += 1;
            loop {
                let Some(t) = tokens.get(i) else {
                    return Err("end of file inside a block".into());
                };
                if t.text == "}" {
                    i += 1;
                    break;
                }
                i += 1;
                let mut nesting = 0usize;
                while i < tokens.len() {
                    let t = &tokens[i];
                    if t.text == "{" {
                        nesting += 1;
                    } else if new_line(i) && nesting == 0 {
                        break;
                    } else if t.text == "}" {
                        nesting = nesting.checked_sub(1).ok_or("unexpected '}'")?;
                    }
                    i += 1;
                }
                if nesting > 0 {
                    return Err("unclosed block".into());
                }
            }
            blocks.push(keys);
        }
        Ok(blocks)
    }

    /// Token texts at depth zero, counting braces by text as Caddy's parser does.
    fn top_level_words(tokens: &[Token]) -> Vec<String> {
        let mut depth = 0i64;
        let mut top = Vec::new();
        for t in tokens {
            match t.text.as_str() {
                "{" => {
                    if depth == 0 {
                        top.push("{".to_string());
                    }
                    depth += 1;
                }
                "}" => {
                    depth -= 1;
                    if depth == 0 {
                        top.push("}".to_string());
                    }
                }
                text if depth == 0 => top.push(text.to_string()),
                _ => {}
            }
        }
        top
    }

    mod properties {
        use super::super::super::body::test_strategies::{accepted_admin_body, real_world_body};
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

            #[test]
            fn render_is_deterministic_and_ignores_site_order(
                entries in prop::collection::btree_map("[a-z]{1,8}\\.test", real_world_body(), 0..6),
                admin in prop::option::of("localhost:[0-9]{4}"),
                seed in any::<u64>(),
            ) {
                let bodies: Vec<(String, CaddyfileBody)> = entries.into_iter().collect();
                let mut sites: Vec<SiteBlock<'_>> = bodies
                    .iter()
                    .map(|(address, body)| SiteBlock { address, body })
                    .collect();
                let global = GlobalOptions { admin, ..GlobalOptions::default() };
                let log = AccessLog { path: "/var/log/a.log".into(), roll_size_mb: 10, roll_keep: 3 };
                let first = render(&global, &sites, Some(&log));
                prop_assert_eq!(&first, &render(&global, &sites, Some(&log)));
                // A cheap deterministic shuffle.
                let len = sites.len();
                for i in (1..len).rev() {
                    let j = (seed.wrapping_mul(i as u64 + 7) % (i as u64 + 1)) as usize;
                    sites.swap(i, j);
                }
                let shuffled = render(&global, &sites, Some(&log));
                prop_assert_eq!(&first, &shuffled);
                prop_assert_eq!(config_hash(&first), config_hash(&shuffled));
                let well_terminated = first.is_empty() || (first.ends_with("}\n") && !first.ends_with("\n\n"));
                prop_assert!(well_terminated, "{}", first);
            }

            #[test]
            fn no_accepted_body_can_escape_its_site_block(
                hostile in accepted_admin_body(),
                extra in accepted_admin_body(),
                neighbour in real_world_body(),
            ) {
                let global = GlobalOptions {
                    email: Some("ops@example.com".into()),
                    extra: Some(extra),
                    ..GlobalOptions::default()
                };
                let sites = [
                    SiteBlock { address: "zulu.test", body: &neighbour },
                    SiteBlock { address: "mid.test", body: &hostile },
                    SiteBlock { address: "alpha.test", body: &neighbour },
                ];
                let log = AccessLog { path: "/var/log/a.log".into(), roll_size_mb: 1, roll_keep: 1 };
                let rendered = replace_env_vars(&render(&global, &sites, Some(&log)));
                let expected_top: Vec<String> = ["{", "}", "alpha.test", "{", "}", "mid.test", "{", "}", "zulu.test", "{", "}"]
                    .iter().map(|s| s.to_string()).collect();
                let expected_blocks: Vec<Vec<String>> = vec![
                    vec![],
                    vec!["alpha.test".into()],
                    vec!["mid.test".into()],
                    vec!["zulu.test".into()],
                ];
                for options in [LexOptions::CADDY_2_7, LexOptions::CADDY_2_6] {
                    let tokens = tokenize_with(&rendered, options)
                        .map_err(|e| TestCaseError::fail(format!("{e}\n{rendered}")))?;
                    prop_assert_eq!(&top_level_words(&tokens), &expected_top, "{}", rendered);
                    prop_assert_eq!(&caddy_server_blocks(&tokens), &Ok(expected_blocks.clone()), "{}", rendered);
                }
            }
        }
    }
}
