//! The Caddyfile reader of the import: a whole Caddyfile read with the lexer, its site
//! blocks turned into addresses and normalised bodies (snippets inlined), and every part that
//! cannot become a site noted with its line. What becomes of the blocks in the database is
//! planned elsewhere (`crate::sites::import`).
//!
//! Reading rules (the README repeats them for people):
//! - Snippets `(name) { … }` are inlined where a site imports them, with `{args[N]}` /
//!   `{args.N}` and whole-token `{args[:]}`-style ranges filled in. `import` of a file
//!   cannot be followed (the file is on another machine) and is left out and reported.
//! - The global options block is not a site: `email`, `admin` and `log` are reported as
//!   settings of the hub's config file; every other option is reported as not mapped. Named
//!   routes and top-level imports are reported too. Nothing is dropped without a note
//!   carrying its line number.
//! - A body is validated like an admin-written raw site: the structure must pass the body
//!   validator, any directive is allowed.

use super::{BodyPolicy, CaddyfileBody, LexOptions, Quote, Token, encode_arg, tokenize_with};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

/// Larger files are refused before lexing.
pub const MAX_FILE_BYTES: usize = 16 * 1024 * 1024;

/// How deep snippets may import snippets.
const MAX_IMPORT_DEPTH: usize = 10;

/// Snippets inlined into each other can multiply a small file into a huge one; the site
/// bodies of one file may add up to this much text at most.
pub const MAX_EXPANDED_BYTES: usize = 32 * 1024 * 1024;

/// Snippets that import each other many times over multiply the work even when they write
/// nothing; a whole file may inline snippets (and note what it leaves out of them) at most
/// this many times.
pub const MAX_EXPANSIONS: usize = 10_000;

/// What a note says about a part of the file that did not become (all of) a vhost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NoteKind {
    /// A setting of the hub's config file, not of the database: set it there.
    Config,
    /// Not imported at all.
    Unmapped,
    /// Imported, but worth knowing (an inlined snippet, a heredoc, an env placeholder).
    Kept,
}

impl NoteKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NoteKind::Config => "config",
            NoteKind::Unmapped => "unmapped",
            NoteKind::Kept => "kept",
        }
    }
}

/// A remark on lines `line..=last_line` of the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Note {
    pub line: usize,
    pub last_line: usize,
    pub kind: NoteKind,
    /// The first source line it is about, trimmed.
    pub source: String,
    pub message: String,
}

/// A file that cannot be read as a Caddyfile at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileError {
    pub line: usize,
    pub message: String,
}

impl std::fmt::Display for FileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for FileError {}

/// One site block as read from the file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Block {
    /// Line of its first address.
    pub line: usize,
    /// The addresses as written (commas removed).
    pub addresses: Vec<String>,
    /// The normalised body (snippets inlined), or why it cannot be one.
    pub body: Result<String, String>,
}

/// A whole file, read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Parsed {
    pub blocks: Vec<Block>,
    pub notes: Vec<Note>,
}

/// Reads a whole Caddyfile. Only a file that cannot be tokenised or whose braces do not
/// balance is refused as a whole; everything else is reported per block or per line.
pub fn parse(input: &str) -> Result<Parsed, FileError> {
    if input.len() > MAX_FILE_BYTES {
        return Err(FileError {
            line: 1,
            message: format!(
                "the file is larger than {} MiB",
                MAX_FILE_BYTES / 1024 / 1024
            ),
        });
    }
    let input = input.replace("\r\n", "\n");
    let tokens =
        tokenize_with(&input, LexOptions::CADDY_2_7.with_comments()).map_err(|e| FileError {
            line: e.line,
            message: e.message,
        })?;
    let reader = Reader {
        expanded: std::cell::Cell::new(0),
        spent: std::cell::Cell::new(0),
        overspent: std::cell::Cell::new(None),
        tokens: &tokens,
        source: input.split('\n').collect(),
        words: (0..tokens.len())
            .filter(|&i| !tokens[i].is_comment())
            .collect(),
    };
    reader.read()
}

/// Positions are indexes into `tokens`; `words` lists those that are not comments.
struct Reader<'a> {
    /// Bytes of site body written so far, against [`MAX_EXPANDED_BYTES`].
    expanded: std::cell::Cell<usize>,
    /// Snippet expansions and notes made while building bodies, against [`MAX_EXPANSIONS`].
    spent: std::cell::Cell<usize>,
    /// The line of the import at which [`MAX_EXPANSIONS`] was passed.
    overspent: std::cell::Cell<Option<usize>>,
    tokens: &'a [Token],
    source: Vec<&'a str>,
    words: Vec<usize>,
}

/// A snippet: the tokens between its braces.
struct Snippet {
    line: usize,
    inner: std::ops::Range<usize>,
}

/// The body text being built, with the source line of each of its lines (for messages).
#[derive(Default)]
struct BodyText {
    text: String,
    lines: Vec<usize>,
}

impl BodyText {
    fn push_line(&mut self, content: &str, source_line: usize) {
        for (k, _) in content.split('\n').enumerate() {
            self.lines.push(source_line + k);
        }
        self.text.push_str(content);
        self.text.push('\n');
    }
}

impl<'a> Reader<'a> {
    fn tok(&self, word: usize) -> &'a Token {
        &self.tokens[self.words[word]]
    }

    fn source_line(&self, line: usize) -> String {
        self.source
            .get(line.saturating_sub(1))
            .map_or(String::new(), |l| l.trim().to_string())
    }

    /// The last physical line a token covers.
    fn end_line(token: &Token) -> usize {
        token.line + token.raw.matches('\n').count()
    }

    /// Counts one snippet expansion or note made at `line` against [`MAX_EXPANSIONS`]; past
    /// it, the whole file is refused (see [`Reader::read`]).
    fn spend(&self, line: usize) -> Result<(), String> {
        self.spent.set(self.spent.get() + 1);
        if self.spent.get() > MAX_EXPANSIONS {
            self.overspent.set(Some(line));
            return Err(format!("line {line}: {}", Self::overspent_message()));
        }
        Ok(())
    }

    /// A note made inside a snippet counts too: a snippet inlined many times would otherwise
    /// make its notes again each time. (Notes on a site's own lines are bounded by the file.)
    fn spend_note(&self, depth: usize, line: usize) -> Result<(), String> {
        if depth > 0 { self.spend(line) } else { Ok(()) }
    }

    fn overspent_message() -> String {
        format!(
            "snippet imports in this file expand more than {MAX_EXPANSIONS} times (snippets \
             that import each other many times over); nothing of the file is imported"
        )
    }

    fn note(&self, first: &Token, last: &Token, kind: NoteKind, message: String) -> Note {
        Note {
            line: first.line,
            last_line: Self::end_line(last),
            kind,
            source: self.source_line(first.line),
            message,
        }
    }

    /// The word index of the `}` closing the `{` at word `open`.
    fn matching(&self, open: usize) -> Result<usize, FileError> {
        let mut depth = 0usize;
        for w in open..self.words.len() {
            match self.tok(w).text.as_str() {
                "{" => depth += 1,
                "}" => {
                    depth -= 1;
                    if depth == 0 {
                        return Ok(w);
                    }
                }
                _ => {}
            }
        }
        Err(FileError {
            line: self.tok(open).line,
            message: "this '{' is never closed".into(),
        })
    }

    /// The line of the first line from word `from` on, outside any braces, that opens a
    /// block with only site addresses before its `{` (`b.example {`, `:8080, x.example {`):
    /// directive names never hold a dot or a colon, so such a line is a site.
    fn site_line_in(&self, from: usize) -> Option<usize> {
        let mut depth = 0usize;
        let mut w = from;
        while w < self.words.len() {
            let end = self.end_of_line(w);
            let line: Vec<&Token> = (w..end).map(|i| self.tok(i)).collect();
            if depth == 0
                && line.len() >= 2
                && line[line.len() - 1].text == "{"
                && line[..line.len() - 1].iter().all(|t| {
                    !t.quoted()
                        && (t.text.ends_with(',')
                            || t.text == "localhost"
                            || t.text.contains('.')
                            || t.text.contains(':'))
                        && !t.text.starts_with('@')
                })
            {
                return Some(line[0].line);
            }
            for t in &line {
                match t.text.as_str() {
                    "{" => depth += 1,
                    "}" => depth = depth.saturating_sub(1),
                    _ => {}
                }
            }
            w = end;
        }
        None
    }

    /// The word index just past the logical line that starts at word `w`.
    fn end_of_line(&self, w: usize) -> usize {
        let mut k = w + 1;
        while k < self.words.len() && !self.tok(k - 1).next_is_on_new_line(self.tok(k)) {
            k += 1;
        }
        k
    }

    fn read(&self) -> Result<Parsed, FileError> {
        let mut notes = Vec::new();
        let mut snippets: BTreeMap<String, Snippet> = BTreeMap::new();
        // Site blocks as (address tokens, token range of the body).
        let mut sites: Vec<(Vec<&Token>, std::ops::Range<usize>)> = Vec::new();
        let n = self.words.len();
        let mut k = 0;
        if n > 0 && self.tok(0).text == "{" {
            let close = self.matching(0)?;
            self.global_options(1, close, &mut notes);
            k = close + 1;
        }
        // Whether a site block or named route came before (snippets do not count).
        let mut blocks_before = false;
        while k < n {
            let first = self.tok(k);
            if first.text == "}" {
                return Err(FileError {
                    line: first.line,
                    message: "this '}' has no matching '{'".into(),
                });
            }
            if first.text == "{" {
                // Caddy: "server block without any key is global configuration, and if used,
                // it must be first".
                return Err(FileError {
                    line: first.line,
                    message: "a block without an address: only the global options block, first \
                              in the file, may have none"
                        .into(),
                });
            }
            if first.text == "import" {
                let end = self.end_of_line(k);
                notes.push(
                    self.note(
                        first,
                        self.tok(end - 1),
                        NoteKind::Unmapped,
                        "an import outside any site is not followed: whatever sites or options it \
                     brings in are not imported"
                            .into(),
                    ),
                );
                k = end;
                continue;
            }
            // Addresses run to the `{` on the same line; a trailing comma continues them on
            // the next line (Caddy's own rule).
            let mut addresses: Vec<&Token> = Vec::new();
            while k < n && self.tok(k).text != "{" {
                addresses.push(self.tok(k));
                k += 1;
                let continues = self.tok(k - 1).text.ends_with(',');
                if k < n && !continues && self.tok(k - 1).next_is_on_new_line(self.tok(k)) {
                    break;
                }
            }
            let body = if k < n && self.tok(k).text == "{" {
                let close = self.matching(k)?;
                let range = self.words[k] + 1..self.words[close];
                k = close + 1;
                range
            } else {
                // No braces: Caddy reads the rest of the file as this one site's body. That
                // is how a file with a single site may be written; anywhere else it is a
                // forgotten brace that would swallow other sites, so it is refused.
                let line = addresses.first().map_or(0, |t| t.line);
                if blocks_before {
                    return Err(FileError {
                        line,
                        message: "a site without braces after other sites: only a file with a \
                                  single site may leave out its braces; put this site's body \
                                  in { }"
                            .into(),
                    });
                }
                if let Some(other) = self.site_line_in(k) {
                    return Err(FileError {
                        line: other,
                        message: format!(
                            "this looks like another site, but the site without braces at line \
                             {line} takes the rest of the file as its body; put each site's \
                             body in {{ }}"
                        ),
                    });
                }
                let start = self.words.get(k).copied().unwrap_or(self.tokens.len());
                k = n;
                start..self.tokens.len()
            };
            let name = addresses.first().map_or("", |t| t.text.as_str());
            if !(addresses.len() == 1 && name.starts_with('(') && name.ends_with(')')) {
                blocks_before = true;
            }
            if addresses.len() == 1 && name.starts_with('(') && name.ends_with(')') {
                let key = name[1..name.len() - 1].to_string();
                snippets.insert(
                    key,
                    Snippet {
                        line: addresses[0].line,
                        inner: body,
                    },
                );
            } else if name.starts_with("&(") {
                let last = self.tokens[body.end.min(self.tokens.len() - 1)].clone();
                notes.push(self.note(
                    addresses[0],
                    &last,
                    NoteKind::Unmapped,
                    format!(
                        "named route {name} is not imported: routes shared between sites are \
                         not part of a vhost, and sites that `invoke` it will fail on Caddy"
                    ),
                ));
            } else {
                sites.push((addresses, body));
            }
        }

        let mut used: HashMap<String, usize> = HashMap::new();
        let mut blocks = Vec::new();
        for (addresses, range) in &sites {
            let mut text = BodyText::default();
            let mut block_notes = Vec::new();
            let mut inlined = std::collections::BTreeSet::new();
            let built = self.build_body(
                range.clone(),
                None,
                0,
                &snippets,
                &mut inlined,
                &mut text,
                &mut block_notes,
            );
            if let Some(line) = self.overspent.get() {
                return Err(FileError {
                    line,
                    message: Self::overspent_message(),
                });
            }
            if built.is_ok() {
                for name in inlined {
                    *used.entry(name).or_default() += 1;
                }
            }
            let body = built.and_then(|()| {
                CaddyfileBody::parse(&text.text, &BodyPolicy::admin())
                    .map(|b| b.as_str().to_string())
                    .map_err(|e| {
                        let line = text.lines.get(e.line() - 1).copied().unwrap_or(0);
                        format!("line {line}: {}", e.message())
                    })
            });
            notes.append(&mut block_notes);
            blocks.push(Block {
                line: addresses.first().map_or(0, |t| t.line),
                addresses: addresses
                    .iter()
                    .flat_map(|t| t.text.split(','))
                    .map(str::trim)
                    .filter(|a| !a.is_empty())
                    .map(str::to_string)
                    .collect(),
                body,
            });
        }
        if self.expanded.get() > MAX_EXPANDED_BYTES {
            return Err(FileError {
                line: 1,
                message: format!(
                    "with its snippets inlined, the file grows past {} MiB",
                    MAX_EXPANDED_BYTES / 1024 / 1024
                ),
            });
        }
        for (name, snippet) in &snippets {
            let message = match used.get(name) {
                Some(n) => {
                    format!("snippet ({name}) is inlined into the {n} site block(s) using it")
                }
                None => format!(
                    "snippet ({name}) is not used by any site that is imported, so nothing of \
                     it is kept"
                ),
            };
            let kind = if used.contains_key(name) {
                NoteKind::Kept
            } else {
                NoteKind::Unmapped
            };
            let last = self
                .tokens
                .get(snippet.inner.end)
                .map_or(snippet.line, |t| t.line);
            notes.push(Note {
                line: snippet.line,
                last_line: last,
                kind,
                source: self.source_line(snippet.line),
                message,
            });
        }
        notes.sort_by(|a, b| {
            (a.line, a.kind.as_str(), &a.message).cmp(&(b.line, b.kind.as_str(), &b.message))
        });
        notes.dedup();
        Ok(Parsed { blocks, notes })
    }

    /// One note per option of the global block (words `from..to`).
    fn global_options(&self, from: usize, to: usize, notes: &mut Vec<Note>) {
        let mut k = from;
        while k < to {
            let start = self.tok(k);
            let mut end = self.end_of_line(k).min(to);
            if self.tok(end - 1).text == "{" {
                end = self.matching(end - 1).map_or(to, |c| c + 1);
            }
            let name = start.text.as_str();
            let value = if end > k + 1 {
                self.tok(k + 1).text.clone()
            } else {
                String::new()
            };
            let (kind, message) = match name {
                "email" => (
                    NoteKind::Config,
                    format!(
                        "set acme_email = {value:?} under [caddy] in the hub's config file; \
                         the hub writes it into every agent's Caddyfile"
                    ),
                ),
                "admin" => (
                    NoteKind::Config,
                    "the admin address is [caddy] admin in the hub's config file (each agent \
                     reports its own Caddy's address)"
                        .into(),
                ),
                "log" => (
                    NoteKind::Config,
                    "Caddy's own log file is [caddy] log in the hub's config file".into(),
                ),
                _ => (
                    NoteKind::Unmapped,
                    format!(
                        "global option {name} is not managed by Gatehouse; the agents' Caddy \
                         runs without it"
                    ),
                ),
            };
            notes.push(self.note(start, self.tok(end - 1), kind, message));
            k = end;
        }
    }

    /// Appends the lines of tokens `range` to `out`, inlining snippet imports. `args` are the
    /// arguments of the import being expanded (None outside snippets).
    #[allow(clippy::too_many_arguments)]
    fn build_body(
        &self,
        range: std::ops::Range<usize>,
        args: Option<&[String]>,
        depth: usize,
        snippets: &BTreeMap<String, Snippet>,
        used: &mut std::collections::BTreeSet<String>,
        out: &mut BodyText,
        notes: &mut Vec<Note>,
    ) -> Result<(), String> {
        let tokens = &self.tokens[range];
        let mut lines: Vec<Vec<&Token>> = Vec::new();
        for (i, t) in tokens.iter().enumerate() {
            if i == 0 || tokens[i - 1].next_is_on_new_line(t) {
                lines.push(Vec::new());
            }
            lines.last_mut().expect("a line was started").push(t);
        }
        let mut previous_end: Option<usize> = None;
        for line in lines {
            let first = line[0];
            if previous_end.is_some_and(|end| first.line > end + 1) {
                out.push_line("", first.line - 1);
            }
            previous_end = line.last().map(|t| Self::end_line(t));
            let words: Vec<&Token> = line.iter().copied().filter(|t| !t.is_comment()).collect();
            let comment = line.iter().find(|t| t.is_comment());
            if let Some(w) = words.first()
                && w.text == "import"
                && !w.quoted()
            {
                let mut filled = Vec::new();
                for word in &words[1..] {
                    filled.extend(fill_args(word, args)?);
                }
                let Some(name) = filled.first() else {
                    return Err(format!("line {}: import without a name", w.line));
                };
                self.spend(w.line)?;
                let Some(snippet) = snippets.get(name.as_str()) else {
                    notes.push(self.note(
                        w,
                        words[words.len() - 1],
                        NoteKind::Unmapped,
                        format!(
                            "import of the file {name:?} is left out of the site: the file is \
                             on the machine the Caddyfile came from; paste its contents in \
                             instead"
                        ),
                    ));
                    continue;
                };
                if depth >= MAX_IMPORT_DEPTH {
                    return Err(format!(
                        "line {}: snippets import each other more than {MAX_IMPORT_DEPTH} \
                         levels deep (a loop?)",
                        w.line
                    ));
                }
                used.insert(name.clone());
                let inner_args: Vec<String> = filled[1..].to_vec();
                self.build_body(
                    snippet.inner.clone(),
                    Some(&inner_args),
                    depth + 1,
                    snippets,
                    used,
                    out,
                    notes,
                )?;
                continue;
            }
            if let Some(w) = words.first()
                && w.text == "invoke"
            {
                self.spend_note(depth, w.line)?;
                notes.push(self.note(
                    w,
                    words[words.len() - 1],
                    NoteKind::Kept,
                    "invoke is kept, but named routes are not imported: Caddy refuses this site \
                     until the route it names exists (and needs Caddy 2.8 or later)"
                        .into(),
                ));
            }
            let mut parts = Vec::new();
            for word in &words {
                if word.quote == Quote::Heredoc {
                    self.spend_note(depth, word.line)?;
                    notes.push(self.note(
                        word,
                        word,
                        NoteKind::Kept,
                        "heredoc kept as written: agents need Caddy 2.7 or later to read it".into(),
                    ));
                }
                if word.raw.contains("{$") {
                    self.spend_note(depth, word.line)?;
                    notes.push(self.note(
                        word,
                        word,
                        NoteKind::Kept,
                        "environment placeholder kept: each agent's Caddy fills it in from its \
                         own environment"
                            .into(),
                    ));
                }
                if args.is_some() && word.text.contains("{args") {
                    parts.extend(fill_args(word, args)?.iter().map(|a| encode_arg(a)));
                } else {
                    parts.push(word.raw.clone());
                }
            }
            if let Some(c) = comment {
                parts.push(c.raw.clone());
            }
            let text = parts.join(" ");
            self.expanded.set(self.expanded.get() + text.len() + 1);
            if self.expanded.get() > MAX_EXPANDED_BYTES {
                return Err(format!(
                    "line {}: with its snippets inlined, the file grows past {} MiB",
                    first.line,
                    MAX_EXPANDED_BYTES / 1024 / 1024
                ));
            }
            out.push_line(&text, first.line);
            if out.text.len() > super::body::MAX_BODY_BYTES {
                return Err(format!(
                    "line {}: with its snippets inlined, this site's body grows past {} KiB",
                    first.line,
                    super::body::MAX_BODY_BYTES / 1024
                ));
            }
        }
        Ok(())
    }
}

/// A snippet token with its `{args…}` placeholders filled in: one value, or several for a
/// whole-token range such as `{args[:]}` or `{args[1:]}`. Outside a snippet, the token as is.
fn fill_args(token: &Token, args: Option<&[String]>) -> Result<Vec<String>, String> {
    let Some(args) = args else {
        return Ok(vec![token.text.clone()]);
    };
    if !token.text.contains("{args") {
        return Ok(vec![token.text.clone()]);
    }
    if let Some(range) = token
        .text
        .strip_prefix("{args[")
        .and_then(|r| r.strip_suffix("]}"))
        .filter(|r| r.contains(':'))
    {
        let (a, b) = range.split_once(':').unwrap_or((range, ""));
        let from = if a.is_empty() { Ok(0) } else { a.parse() };
        let to = if b.is_empty() {
            Ok(args.len())
        } else {
            b.parse()
        };
        return match (from, to) {
            (Ok(from), Ok(to)) if from <= to && to <= args.len() => Ok(args[from..to].to_vec()),
            _ => Err(format!(
                "line {}: {} does not fit the {} argument(s) given",
                token.line,
                token.text,
                args.len()
            )),
        };
    }
    let mut out = String::new();
    let mut rest = token.text.as_str();
    while let Some(pos) = rest.find("{args") {
        out.push_str(&rest[..pos]);
        let after = &rest[pos..];
        let Some(end) = after.find('}') else {
            return Err(format!("line {}: unclosed {{args placeholder", token.line));
        };
        let placeholder = &after[..=end];
        let inner = &placeholder[5..placeholder.len() - 1];
        let index = inner
            .strip_prefix('.')
            .or_else(|| inner.strip_prefix('[').and_then(|i| i.strip_suffix(']')))
            .and_then(|i| i.parse::<usize>().ok());
        let Some(index) = index else {
            return Err(format!(
                "line {}: {placeholder} cannot be filled in inside a longer word",
                token.line
            ));
        };
        let Some(value) = args.get(index) else {
            return Err(format!(
                "line {}: {placeholder} needs more arguments than the import gives ({})",
                token.line,
                args.len()
            ));
        };
        out.push_str(value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(vec![out])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body_of(parsed: &Parsed, address: &str) -> String {
        parsed
            .blocks
            .iter()
            .find(|b| b.addresses.iter().any(|a| a == address))
            .unwrap()
            .body
            .clone()
            .unwrap()
    }

    #[test]
    fn snippets_are_inlined_with_their_arguments() {
        let file = "(proxy) {\n\treverse_proxy {args[0]} {args.1}\n\theader X-Site \"{args[2]}\"\n}\n\
                    (all) {\n\trespond {args[:]}\n}\n\
                    a.example, b.example {\n\timport proxy 10.0.0.1:80 10.0.0.2:80 \"two words\"\n}\n\
                    c.example {\n\timport all \"hi there\" 200\n}\n";
        let parsed = parse(file).unwrap();
        assert_eq!(parsed.blocks[0].addresses, ["a.example", "b.example"]);
        assert_eq!(
            body_of(&parsed, "a.example"),
            "reverse_proxy 10.0.0.1:80 10.0.0.2:80\nheader X-Site \"two words\"\n"
        );
        assert_eq!(body_of(&parsed, "c.example"), "respond \"hi there\" 200\n");
        let kept: Vec<_> = parsed
            .notes
            .iter()
            .filter(|n| n.kind == NoteKind::Kept)
            .map(|n| n.line)
            .collect();
        assert_eq!(kept, [1, 5]);
    }

    #[test]
    fn global_options_and_file_imports_are_reported_by_line() {
        let file = "{\n\temail ops@example.com\n\tservers {\n\t\tprotocols h1\n\t}\n}\n\n\
                    a.example {\n\timport /etc/caddy/common.conf\n\trespond ok\n}\n";
        let parsed = parse(file).unwrap();
        let notes: Vec<_> = parsed
            .notes
            .iter()
            .map(|n| (n.line, n.last_line, n.kind))
            .collect();
        assert_eq!(
            notes,
            [
                (2, 2, NoteKind::Config),
                (3, 5, NoteKind::Unmapped),
                (9, 9, NoteKind::Unmapped)
            ]
        );
        assert_eq!(body_of(&parsed, "a.example"), "respond ok\n");
    }

    #[test]
    fn a_bad_body_is_reported_with_the_file_line() {
        let file = "a.example {\n\trespond ok\n\thandle {\n\t\trespond \"x\" 200 {\n\t}\n}\n";
        let err = parse(file);
        // The braces do not balance across the file: refused as a whole.
        assert!(err.is_err());
        let file = "a.example {\n\trespond ok\n\t# C:\\dir\n\trespond no\n}\n";
        let parsed = parse(file).unwrap();
        let why = parsed.blocks[0].body.clone().unwrap_err();
        assert!(why.starts_with("line 3:"), "{why}");
    }

    #[test]
    fn snippets_that_multiply_each_other_are_stopped() {
        let mut file =
            String::from("(s0) {\n\trespond \"0123456789012345678901234567890123456789\"\n}\n");
        for k in 1..10 {
            let prev = k - 1;
            file.push_str(&format!("(s{k}) {{\n"));
            for _ in 0..10 {
                file.push_str(&format!("\timport s{prev}\n"));
            }
            file.push_str("}\n");
        }
        file.push_str("a.example {\n\timport s9\n}\n");
        // One site stops at the body limit…
        let parsed = parse(&file).unwrap();
        let why = parsed.blocks[0].body.clone().unwrap_err();
        assert!(why.contains("grows past 256 KiB"), "{why}");
        // … and many sites just under it at the limit for the whole file: big snippets,
        // inlined few enough times to stay within the expansion limit.
        let line = format!("\trespond \"{}\"\n", "x".repeat(8000));
        let mut file = format!("(big) {{\n{line}}}\n(many) {{\n");
        for _ in 0..30 {
            file.push_str("\timport big\n");
        }
        file.push_str("}\n");
        for k in 0..140 {
            file.push_str(&format!("s{k}.example {{\n\timport many\n}}\n"));
        }
        let err = parse(&file).unwrap_err();
        assert!(err.message.contains("grows past 32 MiB"), "{err}");
    }

    /// Snippets s0..s9, each importing the next twenty times, the last writing nothing:
    /// about 20^9 expansions and not one byte of body, so only counting expansions stops it.
    fn fan_out(last: &str) -> String {
        let mut file = String::new();
        for k in 0..9 {
            file.push_str(&format!("(s{k}) {{\n"));
            for _ in 0..20 {
                file.push_str(&format!("\timport s{}\n", k + 1));
            }
            file.push_str("}\n");
        }
        file.push_str(&format!("(s9) {{\n{last}}}\n"));
        file.push_str("a.example {\n\timport s0\n\trespond ok\n}\n");
        file
    }

    #[test]
    fn snippets_that_fan_out_without_writing_are_refused() {
        for last in ["", "\timport missing.conf\n"] {
            let file = fan_out(last);
            assert!(file.len() < 4096, "a small paste: {} bytes", file.len());
            let err = parse(&file).unwrap_err();
            assert!(
                err.message.contains("expand more than 10000 times"),
                "{last:?}: {err}"
            );
            // The line named is an import inside the snippets.
            let line = file.lines().nth(err.line - 1).unwrap();
            assert!(line.trim_start().starts_with("import "), "{err}: {line}");
        }
        // Notes made inside snippets count too: one snippet, inlined a few times, noting a
        // thousand file imports each time.
        let mut file = String::from("(s) {\n");
        for _ in 0..1000 {
            file.push_str("\timport missing.conf\n");
        }
        file.push_str("}\n(t) {\n");
        for _ in 0..20 {
            file.push_str("\timport s\n");
        }
        file.push_str("}\na.example {\n\timport t\n}\n");
        let err = parse(&file).unwrap_err();
        assert!(err.message.contains("expand more than"), "{err}");
    }

    #[test]
    fn snippets_used_many_times_within_the_limit_are_inlined() {
        let mut file = String::from("(s) {\n\timport missing.conf\n\theader X-A b\n}\n");
        for k in 0..2000 {
            file.push_str(&format!("s{k}.example {{\n\timport s\n\timport s\n}}\n"));
        }
        let parsed = parse(&file).unwrap();
        assert_eq!(parsed.blocks.len(), 2000);
        assert_eq!(
            body_of(&parsed, "s1999.example"),
            "header X-A b\nheader X-A b\n"
        );
    }

    mod hostile {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

            /// Whatever is pasted, reading it never panics, and every body it accepts is a
            /// valid admin body already in normal form.
            #[test]
            fn any_input_is_read_or_refused_without_panicking(
                input in "[a-z0-9{}()\"`\\#<$:,.&*@ \t\n-]{0,300}",
            ) {
                if let Ok(parsed) = parse(&input) {
                    for block in &parsed.blocks {
                        if let Ok(body) = &block.body {
                            let again = CaddyfileBody::parse(body, &BodyPolicy::admin());
                            prop_assert_eq!(again.map(|b| b.as_str().to_string()), Ok(body.clone()));
                        }
                    }
                    for note in &parsed.notes {
                        prop_assert!(note.line >= 1 && note.last_line >= note.line);
                    }
                }
            }

            /// Snippet imports with arbitrary arguments never panic either.
            #[test]
            fn snippet_arguments_are_filled_in_or_refused(
                args in prop::collection::vec("[a-z0-9{}\"` \\:\\[\\]]{0,12}", 0..4),
                placeholder in "\\{args(\\.[0-9]|\\[[0-9]?:?[0-9]?\\])\\}",
            ) {
                let quoted: Vec<String> = args.iter().map(|a| encode_arg(a)).collect();
                let file = format!(
                    "(s) {{\n\trespond {placeholder}\n}}\na.example {{\n\timport s {}\n}}\n",
                    quoted.join(" ")
                );
                let parsed = parse(&file).expect("the file itself is well formed");
                match &parsed.blocks[0].body {
                    Ok(body) => prop_assert!(body.starts_with("respond"), "{}", body),
                    Err(why) => prop_assert!(why.starts_with("line "), "{}", why),
                }
            }
        }
    }

    #[test]
    fn a_site_without_braces_takes_the_rest_of_the_file() {
        let parsed = parse("a.example\nrespond ok\n").unwrap();
        assert_eq!(parsed.blocks.len(), 1);
        assert_eq!(body_of(&parsed, "a.example"), "respond ok\n");
        // Global options and snippets before it are fine (Caddy reads those too).
        let file = "{\n\temail ops@example.com\n}\n(s) {\n\theader X-A b\n}\n\
                    a.example\nimport s\nhandle /api/* {\n\treverse_proxy 10.0.0.1:80 {\n\t\t\
                    lb_policy first\n\t}\n}\n";
        let parsed = parse(file).unwrap();
        assert_eq!(parsed.blocks.len(), 1);
        assert!(body_of(&parsed, "a.example").starts_with("header X-A b\nhandle /api/* {"));
    }

    #[test]
    fn a_block_without_an_address_after_the_first_is_refused_with_its_line() {
        let file = "a.example {\n\trespond ok\n}\n\n{\n\trespond lost\n}\n";
        let err = parse(file).unwrap_err();
        assert_eq!(err.line, 5, "{err}");
        assert!(err.message.contains("without an address"), "{err}");
        // The global options block first is still read as such.
        let parsed = parse("{\n\tadmin off\n}\na.example {\n\trespond ok\n}\n").unwrap();
        assert_eq!(parsed.blocks.len(), 1);
    }

    #[test]
    fn a_site_without_braces_among_other_sites_is_refused_with_its_line() {
        // A stray line after a site would take every later site as its body.
        let file = "a.example {\n\trespond 1\n}\nstray.example\nb.example {\n\trespond 2\n}\n";
        let err = parse(file).unwrap_err();
        assert_eq!(err.line, 4, "{err}");
        assert!(
            err.message.contains("without braces after other sites"),
            "{err}"
        );
        // A first site without braces followed by sites: the line of the swallowed site.
        let file =
            "(s) {\n\trespond 1\n}\na.example\nimport s\n\n:8080, b.example {\n\trespond 2\n}\n";
        let err = parse(file).unwrap_err();
        assert_eq!(err.line, 7, "{err}");
        assert!(err.message.contains("at line 4"), "{err}");
    }
}
