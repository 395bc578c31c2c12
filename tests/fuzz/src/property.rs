//! The property the validator target checks: whatever the validators accept renders to a
//! Caddyfile whose site blocks are exactly the vhosts. The rendered file is lexed again, with
//! Caddy 2.6's rules (the Debian package) and with 2.7's (heredocs), and walked the way Caddy's
//! parser walks it: an optional global block, then `address {` … `}` blocks whose nesting is
//! counted on `{` and `}` tokens. Every block must be one of the vhosts, in render order, and
//! hold exactly the tokens of its body followed by a bare `log` (the access-log switch).

use crate::domain::caddyfile::{
    AccessLog, CaddyfileBody, GlobalOptions, LexOptions, SiteBlock, Token, render, tokenize_with,
};
use crate::domain::vhost::SiteAddress;

/// One vhost the validators accepted.
pub struct Site {
    pub address: SiteAddress,
    pub body: CaddyfileBody,
}

const ACCESS_LOG: &str = "/var/log/caddy/gatehouse-access.log";

/// Renders as `site_config::for_agent` does, with every global option set so that the global
/// block is always there to be skipped.
pub fn render_like_the_hub(sites: &[Site]) -> String {
    let global = GlobalOptions {
        admin: Some("127.0.0.1:2019".into()),
        email: Some("ops@example.com".into()),
        caddy_log: Some("/var/log/caddy/caddy.log".into()),
        extra: None,
    };
    let blocks: Vec<SiteBlock<'_>> = sites
        .iter()
        .map(|s| SiteBlock {
            address: s.address.as_str(),
            body: &s.body,
        })
        .collect();
    let log = AccessLog {
        path: ACCESS_LOG.into(),
        roll_size_mb: 50,
        roll_keep: 5,
    };
    render(&global, &blocks, Some(&log))
}

fn texts(tokens: &[Token]) -> Vec<String> {
    tokens.iter().map(|t| t.text.clone()).collect()
}

/// Panics (a fuzz finding) unless the rendered file's site blocks are exactly `sites`.
pub fn check(sites: &[Site]) {
    let rendered = render_like_the_hub(sites);
    let mut expected: Vec<&Site> = sites.iter().collect();
    expected.sort_by(|a, b| {
        (a.address.as_str(), a.body.as_str()).cmp(&(b.address.as_str(), b.body.as_str()))
    });
    for (dialect, options) in [
        ("Caddy 2.6", LexOptions::CADDY_2_6),
        ("Caddy 2.7", LexOptions::CADDY_2_7),
    ] {
        let tokens = tokenize_with(&rendered, options).unwrap_or_else(|e| {
            panic!("{dialect}: the rendered file does not lex: {e}\n{rendered}")
        });
        let blocks = site_blocks(&tokens, dialect, &rendered);
        let found: Vec<&str> = blocks.iter().map(|(a, _)| a.as_str()).collect();
        let wanted: Vec<&str> = expected.iter().map(|s| s.address.as_str()).collect();
        assert_eq!(
            found, wanted,
            "{dialect}: site blocks differ from the vhosts\n{rendered}"
        );
        // Each site switches access logging on with a bare `log`; the shared logger that
        // writes the file is a global option.
        let log = tokenize_with("log\n", options).expect("the log directive lexes");
        for ((address, inner), site) in blocks.iter().zip(&expected) {
            let body = tokenize_with(site.body.as_str(), options).unwrap_or_else(|e| {
                panic!(
                    "{dialect}: an accepted body does not lex: {e}\n{}",
                    site.body
                )
            });
            let mut want = texts(&body);
            want.extend(texts(&log));
            assert_eq!(
                inner, &want,
                "{dialect}: the block of {address} does not hold exactly its body\n{rendered}"
            );
        }
    }
}

/// Where a structural check failed, for the panic message.
struct Failure<'a> {
    dialect: &'a str,
    rendered: &'a str,
}

impl Failure<'_> {
    fn at(&self, why: &str) -> ! {
        panic!("{}: {why}\n{}", self.dialect, self.rendered)
    }
}

/// `(address, tokens inside the braces)` for every site block, in file order.
fn site_blocks(tokens: &[Token], dialect: &str, rendered: &str) -> Vec<(String, Vec<String>)> {
    let fail = Failure { dialect, rendered };
    let mut i = 0;
    if tokens.first().is_some_and(|t| t.text == "{") {
        // The global options block: only at the very start, alone on its line.
        let (_, end) = block(tokens, 0, &fail);
        i = end;
    }
    let mut blocks = Vec::new();
    while i < tokens.len() {
        let address = &tokens[i];
        if address.text == "{" || address.text == "}" {
            fail.at(&format!("a brace where a site address belongs (token {i})"));
        }
        let Some(open) = tokens.get(i + 1) else {
            fail.at("a site address without a block")
        };
        if open.text != "{" || address.next_is_on_new_line(open) {
            fail.at(&format!(
                "the site address {:?} is not followed by `{{` on its line",
                address.text
            ));
        }
        let (inner, end) = block(tokens, i + 1, &fail);
        blocks.push((address.text.clone(), inner));
        i = end;
    }
    blocks
}

/// From the `{` at `open`: the tokens inside it and the index after its matching `}`, which
/// must end its line.
fn block(tokens: &[Token], open: usize, fail: &Failure<'_>) -> (Vec<String>, usize) {
    if tokens
        .get(open + 1)
        .is_some_and(|next| !tokens[open].next_is_on_new_line(next))
    {
        fail.at("a block's `{` is not the last token on its line");
    }
    let mut depth = 1;
    let mut inner = Vec::new();
    let mut i = open + 1;
    loop {
        let Some(t) = tokens.get(i) else {
            fail.at("a block is left open at the end of the file")
        };
        match t.text.as_str() {
            "{" => depth += 1,
            "}" => depth -= 1,
            _ => {}
        }
        if depth == 0 {
            if tokens
                .get(i + 1)
                .is_some_and(|next| !t.next_is_on_new_line(next))
            {
                fail.at("a block's closing `}` is followed by more on its line");
            }
            return (inner, i + 1);
        }
        inner.push(t.text.clone());
        i += 1;
    }
}
