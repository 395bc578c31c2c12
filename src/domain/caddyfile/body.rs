//! Validation and `caddy fmt`-style normalization of untrusted site-block bodies: the text a
//! user types to go inside `example.com { ... }`.
//!
//! The body ends up spliced into a Caddyfile shared with other people's sites, so the main job
//! is making sure that it cannot close its own block and open another site or the global
//! options. Every check is made against the token stream as Caddy reads it, in both the
//! Caddy 2.7+ dialect (heredocs) and the Caddy 2.6 dialect (no heredocs), because the same
//! bytes mean different things to the two and we do not know which one an agent runs.
//! Accepted input is re-emitted from its tokens, then parsed again as a backstop: if the
//! normalized text does not reproduce the same tokens, it is rejected rather than trusted.

use std::fmt;

use super::lexer::{LexError, LexOptions, Quote, Token, tokenize_with};

/// Directives a non-admin user may use at the top level of a body and inside route-like
/// blocks (`handle`, `route`, ...), which hold ordinary directives too.
///
/// Left out on purpose, because they reach the agent's filesystem or process:
/// - `root`, `file_server`, `try_files`, `templates`: serve, probe or template-include any file
///   the Caddy user can read, including other tenants' files and the TLS private keys in
///   Caddy's storage (`file_server` without `root` serves Caddy's working directory).
/// - `php_fastcgi`: runs arbitrary PHP files on the host through any FastCGI socket.
/// - `tls`: loads certificate and key files from disk.
/// - `log`: writes files at any path.
/// - `import`: reads files from disk (it is governed by [`BodyPolicy::allow_import`] anyway).
/// - `acme_server`, `metrics`, `tracing`, `invoke`: server-wide state or other people's routes.
///
/// This list is only the first, cheap gate (it works without a Caddy and points at a line).
/// What a `user`'s site may actually do — where `reverse_proxy` and everything else may dial,
/// which files anything may read, every subdirective, matcher and placeholder — is judged on
/// Caddy's own adapted JSON of the site by [`crate::domain::tenant::judge`], before it is
/// saved; `reverse_proxy` is here because that judgement holds its upstreams, transports and
/// health checks to the networks an admin opened.
pub const DEFAULT_USER_DIRECTIVES: &[&str] = &[
    "abort",
    "basicauth",
    "basic_auth",
    "encode",
    "error",
    "handle",
    "handle_errors",
    "handle_path",
    "header",
    "map",
    "method",
    "redir",
    "request_body",
    "request_header",
    "respond",
    "reverse_proxy",
    "rewrite",
    "route",
    "uri",
    "vars",
];

/// Directives whose block holds ordinary directives rather than options, so an allowlist must
/// look inside them; otherwise `handle { root * / }` would walk straight past it.
const CONTAINER_DIRECTIVES: &[&str] = &[
    "route",
    "handle",
    "handle_path",
    "handle_errors",
    "handle_response",
];

/// Larger bodies are refused before lexing; nobody writes a quarter megabyte of site config.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// Deepest block nesting inside a body. `caddy fmt` stops indenting at ten levels and the site
/// block itself is one, so anything deeper could never be formatted stably.
pub const MAX_NESTING: usize = 8;

/// What a body may contain. Build it with [`BodyPolicy::admin`] or [`BodyPolicy::restricted`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyPolicy {
    /// Allows everything that pulls host-side content into the config: `import` (files),
    /// `{$VAR}` (Caddy's parse-time environment substitution) and the runtime placeholders
    /// `{env.*}` and `{file.*}` (environment variables and file contents).
    pub allow_import: bool,
    /// `None` allows any directive; `Some(list)` limits the top level and route-like blocks
    /// to `list` (named matchers `@name` are always allowed, they are not directives).
    pub allowed_directives: Option<Vec<String>>,
}

impl BodyPolicy {
    pub fn admin() -> BodyPolicy {
        BodyPolicy {
            allow_import: true,
            allowed_directives: None,
        }
    }

    pub fn restricted<I, S>(directives: I) -> BodyPolicy
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        BodyPolicy {
            allow_import: false,
            allowed_directives: Some(
                directives
                    .into_iter()
                    .map(|d| d.as_ref().to_string())
                    .collect(),
            ),
        }
    }

    /// [`BodyPolicy::restricted`] with [`DEFAULT_USER_DIRECTIVES`].
    pub fn default_user() -> BodyPolicy {
        BodyPolicy::restricted(DEFAULT_USER_DIRECTIVES)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyErrorKind {
    TooLarge,
    ControlCharacter,
    Syntax,
    Unbalanced,
    EscapesBlock,
    BracePlacement,
    TooDeep,
    Import,
    Snippet,
    DirectiveNotAllowed,
    EnvironmentPlaceholder,
    HostPlaceholder,
    Heredoc,
    Comment,
    Unrepresentable,
}

/// Why a body was rejected, with the 1-based line and column it was found at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyError {
    kind: BodyErrorKind,
    line: usize,
    column: usize,
    message: String,
}

impl BodyError {
    fn new(kind: BodyErrorKind, line: usize, column: usize, message: impl Into<String>) -> Self {
        BodyError {
            kind,
            line,
            column,
            message: message.into(),
        }
    }

    fn at(kind: BodyErrorKind, token: &Token, message: impl Into<String>) -> Self {
        BodyError::new(kind, token.line, token.column, message)
    }

    pub fn kind(&self) -> BodyErrorKind {
        self.kind
    }

    pub fn line(&self) -> usize {
        self.line
    }

    pub fn column(&self) -> usize {
        self.column
    }

    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}, column {}: {}",
            self.line, self.column, self.message
        )
    }
}

impl std::error::Error for BodyError {}

impl From<LexError> for BodyError {
    fn from(e: LexError) -> Self {
        BodyError::new(BodyErrorKind::Syntax, e.line, e.column, e.message)
    }
}

/// A validated site-block body, kept in normalized (`caddy fmt`) form.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CaddyfileBody {
    lines: Vec<Line>,
    text: String,
    directives: Vec<String>,
}

/// One output line. `content` may span several physical lines when it holds a multi-line
/// quoted token or a heredoc; those continuation lines are never re-indented, since that
/// would change the token's value.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Line {
    depth: usize,
    blank_before: bool,
    content: String,
}

impl CaddyfileBody {
    pub fn parse(input: &str, policy: &BodyPolicy) -> Result<CaddyfileBody, BodyError> {
        let (body, words) = analyze(input, policy)?;
        // Backstop: the normalized text must read back as the same tokens and the same text.
        let reparsed = analyze(&body.text, policy);
        match reparsed {
            Ok((again, again_words)) if again.text == body.text && again_words == words => Ok(body),
            Ok(_) | Err(_) => Err(BodyError::new(
                BodyErrorKind::Unrepresentable,
                1,
                1,
                "this body cannot be rewritten in standard form without changing its meaning",
            )),
        }
    }

    /// A body that [`CaddyfileBody::parse`] produced and that was stored: it is checked again
    /// (tokens, structure, the policy), but not for being its own normal form, which `parse`
    /// made sure of when it was saved. Rendering thousands of sites is twice as fast.
    pub fn parse_stored(input: &str, policy: &BodyPolicy) -> Result<CaddyfileBody, BodyError> {
        let (body, _) = analyze(input, policy)?;
        Ok(body)
    }

    /// The normalized body at nesting depth zero, one line per directive, ending in a newline
    /// (or empty).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Top-level directive names in order of appearance (named matchers excluded).
    pub fn directives(&self) -> &[String] {
        &self.directives
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// Appends the body to `out`, indented as if it sat `depth` blocks deep.
    pub(super) fn write_indented(&self, out: &mut String, depth: usize) {
        for line in &self.lines {
            if line.blank_before {
                out.push('\n');
            }
            push_tabs(out, depth + line.depth);
            out.push_str(&line.content);
            out.push('\n');
        }
    }
}

impl fmt::Display for CaddyfileBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

pub(super) fn push_tabs(out: &mut String, depth: usize) {
    out.extend(std::iter::repeat_n('\t', depth));
}

type WordSignature = Vec<(String, Quote)>;

fn analyze(input: &str, policy: &BodyPolicy) -> Result<(CaddyfileBody, WordSignature), BodyError> {
    if input.len() > MAX_BODY_BYTES {
        return Err(BodyError::new(
            BodyErrorKind::TooLarge,
            1,
            1,
            format!("body is larger than {} KiB", MAX_BODY_BYTES / 1024),
        ));
    }
    let input = input.replace("\r\n", "\n");
    check_characters(&input)?;
    check_environment_placeholders(&input, policy)?;

    let modern = tokenize_with(&input, LexOptions::CADDY_2_7.with_comments())?;
    for token in modern.iter().filter(|t| !t.is_comment()) {
        check_word(token)?;
    }
    let lines = structure(&modern, true)?;
    check_policy(&lines, policy)?;
    check_caddy_model(&modern, policy)?;

    // Caddy 2.6 reads heredoc bodies as ordinary lines, so they must be harmless there too.
    legacy_check(&input, policy).map_err(|e| BodyError {
        message: format!(
            "as read by Caddy 2.6 and older, which have no heredocs: {}",
            e.message
        ),
        ..e
    })?;

    let words = modern
        .iter()
        .filter(|t| !t.is_comment())
        .map(|t| (t.text.clone(), t.quote))
        .collect();
    Ok((normalize(&lines), words))
}

/// Caddy 2.6 reads heredoc content as ordinary lines. For everyone those lines must neither end
/// the site block nor leave it open; under a restricted policy they must also pass the
/// allowlist and placeholder rules, because on 2.6 they really are directives.
fn legacy_check(input: &str, policy: &BodyPolicy) -> Result<(), BodyError> {
    let legacy = tokenize_with(input, LexOptions::CADDY_2_6.with_comments())?;
    if policy.allowed_directives.is_some() || !policy.allow_import {
        let lines = structure(&legacy, false)?;
        check_policy(&lines, policy)?;
    }
    check_caddy_model(&legacy, policy)
}

fn check_characters(input: &str) -> Result<(), BodyError> {
    let (mut line, mut column) = (1, 1);
    for c in input.chars() {
        let message = match c {
            '\r' => Some("carriage return without a following newline".to_string()),
            '\u{feff}' => Some("invisible byte order mark (U+FEFF)".to_string()),
            c if c.is_control() && c != '\t' && c != '\n' => Some(format!(
                "control character U+{:04X} is not allowed",
                c as u32
            )),
            _ => None,
        };
        if let Some(message) = message {
            return Err(BodyError::new(
                BodyErrorKind::ControlCharacter,
                line,
                column,
                message,
            ));
        }
        if c == '\n' {
            line += 1;
            column = 1;
        } else {
            column += 1;
        }
    }
    Ok(())
}

/// Caddy replaces `{$NAME}` in the raw file text before lexing, even inside quotes and
/// comments, and a `{$` without a nearby `}` deletes everything up to the next `}` in the
/// whole file, including our closing brace. So `{$` is refused outright unless the policy
/// allows host content, and even then must be a plain `{$NAME}` or `{$NAME:default}`.
fn check_environment_placeholders(input: &str, policy: &BodyPolicy) -> Result<(), BodyError> {
    for (index, _) in input.match_indices("{$") {
        let (line, column) = position_of(input, index);
        if !policy.allow_import {
            return Err(BodyError::new(
                BodyErrorKind::EnvironmentPlaceholder,
                line,
                column,
                "environment placeholders ({$...}) expose the server's environment and are \
                 not allowed for your role",
            ));
        }
        if !is_well_formed_env_placeholder(&input[index + 2..]) {
            return Err(BodyError::new(
                BodyErrorKind::EnvironmentPlaceholder,
                line,
                column,
                "environment placeholder must look like {$NAME} or {$NAME:default}, with only \
                 letters, digits, '_' in NAME and no spaces, quotes or braces in the default",
            ));
        }
    }
    Ok(())
}

fn is_well_formed_env_placeholder(after_open: &str) -> bool {
    let name_len = after_open
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(after_open.len());
    if name_len == 0 || after_open.starts_with(|c: char| c.is_ascii_digit()) {
        return false;
    }
    let mut rest = &after_open[name_len..];
    if let Some(default) = rest.strip_prefix(':') {
        let default_len = default
            .find(|c: char| !(c.is_ascii_alphanumeric() || "._/@%+=,:-".contains(c)))
            .unwrap_or(default.len());
        rest = &default[default_len..];
    }
    rest.starts_with('}')
}

/// The text Caddy would produce from `raw` if every `{$NAME:default}` fell back to its
/// default (or to nothing), which is what happens whenever the variable is unset.
fn without_environment(raw: &str) -> String {
    let mut out = String::new();
    let mut rest = raw;
    while let Some(open) = rest.find("{$") {
        out.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        let Some(close) = after.find('}') else {
            out.push_str(&rest[open..]);
            return out;
        };
        out.push_str(after[..close].split_once(':').map_or("", |(_, d)| d));
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    out
}

/// A `{$...}` substitution must leave its token the same kind of token: no new quote, comment,
/// heredoc opener or brace, no trailing backslash turning into a line continuation. A whole
/// token may vanish, except at the start of a line, where the next word would take its place.
fn check_environment_token(token: &Token, first_on_line: bool) -> Result<(), BodyError> {
    let error = |message: &str| {
        Err(BodyError::at(
            BodyErrorKind::EnvironmentPlaceholder,
            token,
            message,
        ))
    };
    if token.quote == Quote::Heredoc {
        return error("environment placeholders are not allowed inside heredocs");
    }
    let substituted = without_environment(&token.raw);
    if substituted.is_empty() {
        if first_on_line {
            return error("a line cannot start with an environment placeholder on its own");
        }
        return Ok(());
    }
    let relexed = tokenize_with(&substituted, LexOptions::CADDY_2_7);
    let keeps_shape = matches!(&relexed, Ok(t) if t.len() == 1
        && t[0].quote == token.quote
        && t[0].raw == substituted
        && !matches!(t[0].text.as_str(), "{" | "}" | "{}" | "import")
        && !substituted.starts_with("<<")
        && !substituted.ends_with('\\'));
    if !keeps_shape {
        return error(
            "this environment placeholder changes how the line is read when the variable is \
             unset; keep it a whole argument or put it inside double quotes",
        );
    }
    Ok(())
}

fn position_of(input: &str, byte_index: usize) -> (usize, usize) {
    let before = &input[..byte_index];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// Rules for a single word, in the 2.7+ reading.
fn check_word(token: &Token) -> Result<(), BodyError> {
    if token.quote == Quote::Heredoc {
        if token.text.is_empty() {
            // Caddy miscounts the lines of an empty heredoc and glues the next line onto it.
            return Err(BodyError::at(
                BodyErrorKind::Heredoc,
                token,
                "empty heredoc; Caddy miscounts its lines, write \"\" instead",
            ));
        }
        let last_line = &token.raw[token.raw.rfind('\n').map_or(0, |i| i + 1)..];
        let marker_len = token.raw[2..token.raw.find('\n').unwrap_or(2)]
            .trim_end()
            .len();
        let padding = &last_line[..last_line.len().saturating_sub(marker_len)];
        if !padding.chars().all(|c| c == ' ' || c == '\t') {
            return Err(BodyError::at(
                BodyErrorKind::Heredoc,
                token,
                "a heredoc's closing marker must be on a line of its own (only indentation \
                 before it)",
            ));
        }
    }
    // The normalizer re-emits `raw`, so it has to read back as this very token.
    let relexed = tokenize_with(&token.raw, LexOptions::CADDY_2_7);
    let same = matches!(&relexed, Ok(t) if t.len() == 1 && t[0].text == token.text && t[0].quote == token.quote);
    if !same {
        return Err(BodyError::at(
            BodyErrorKind::Unrepresentable,
            token,
            "this token cannot be reproduced exactly; check for a stray backslash",
        ));
    }
    Ok(())
}

/// A logical line of the source: Caddy's notion of a line, which a `\` continuation extends.
struct SourceLine<'t> {
    words: Vec<&'t Token>,
    comment: Option<&'t Token>,
    newlines_before: usize,
    depth: usize,
    opens: bool,
    closes: bool,
}

fn group_lines(tokens: &[Token]) -> Result<Vec<SourceLine<'_>>, BodyError> {
    let mut lines: Vec<SourceLine<'_>> = Vec::new();
    let mut previous: Option<&Token> = None;
    for token in tokens {
        if token.is_comment() && token.continues_line {
            return Err(BodyError::at(
                BodyErrorKind::Comment,
                token,
                "a backslash inside a comment makes Caddy join the next line onto this one; \
                 remove the backslash",
            ));
        }
        let starts_line = previous.is_none_or(|p| p.next_is_on_new_line(token));
        if starts_line {
            lines.push(SourceLine {
                words: Vec::new(),
                comment: None,
                newlines_before: token.newlines_before,
                depth: 0,
                opens: false,
                closes: false,
            });
        }
        let line = lines.last_mut().expect("a line was just started");
        if token.is_comment() {
            line.comment = Some(token);
        } else {
            line.words.push(token);
        }
        previous = Some(token);
    }
    Ok(lines)
}

/// Groups tokens into lines and enforces Caddy's brace layout, strictly enough that our depth
/// count and Caddy's parser can never disagree: `{` ends the line that opens a block, `}` sits
/// alone on its line, and braces are never quoted (Caddy's parser compares token text, so a
/// quoted `"}"` still closes a block).
fn structure(tokens: &[Token], heredocs: bool) -> Result<Vec<SourceLine<'_>>, BodyError> {
    use BodyErrorKind::*;
    let mut lines = group_lines(tokens)?;
    let mut open: Vec<&Token> = Vec::new();
    for line in &mut lines {
        let last = line.words.len().saturating_sub(1);
        for (k, word) in line.words.iter().enumerate() {
            let text = word.text.as_str();
            if word.quoted() && (text == "{" || text == "}") {
                return Err(BodyError::at(
                    BracePlacement,
                    word,
                    "a quoted brace still opens or closes a block in Caddy; write \\{ or \\} \
                     for a literal brace",
                ));
            }
            match text {
                "}" if line.words.len() != 1 => {
                    return Err(BodyError::at(
                        BracePlacement,
                        word,
                        "'}' must be on a line by itself",
                    ));
                }
                "{" if k == 0 => {
                    return Err(BodyError::at(
                        BracePlacement,
                        word,
                        "'{' must end the line that opens the block, not start a new line",
                    ));
                }
                "{" if k != last => {
                    return Err(BodyError::at(
                        BracePlacement,
                        word,
                        "'{' must be the last token on its line",
                    ));
                }
                "{}" if k == last && !word.quoted() => {
                    return Err(BodyError::at(
                        BracePlacement,
                        word,
                        "'{}' at the end of a line is rejected by Caddy; quote it",
                    ));
                }
                _ => {}
            }
        }
        if let Some(first) = line.words.first()
            && first.raw.starts_with('\\')
        {
            // `caddy fmt` glues such a line onto the previous one, changing its meaning.
            return Err(BodyError::at(
                BracePlacement,
                first,
                "a line cannot start with a backslash",
            ));
        }
        if let Some(&last_word) = line.words.last()
            && heredocs
            && !last_word.quoted()
            && last_word.raw.starts_with("<<")
        {
            return Err(BodyError::at(
                Heredoc,
                last_word,
                "a word starting with '<<' at the end of a line would open a heredoc once \
                 reformatted; quote it or finish the heredoc opener with a newline",
            ));
        }

        line.closes = line.words.len() == 1 && line.words[0].text == "}";
        line.opens = line.words.last().is_some_and(|w| w.text == "{");
        if line.closes && open.pop().is_none() {
            return Err(BodyError::at(
                EscapesBlock,
                line.words[0],
                "this '}' would close the site block itself; a body cannot end its own block \
                 or start another one",
            ));
        }
        line.depth = open.len();
        if line.opens {
            let brace = *line.words.last().expect("an opening line has words");
            open.push(brace);
            if open.len() > MAX_NESTING {
                return Err(BodyError::at(
                    TooDeep,
                    brace,
                    format!("blocks are nested more than {MAX_NESTING} levels deep"),
                ));
            }
        }
    }
    if let Some(brace) = open.last() {
        return Err(BodyError::at(Unbalanced, brace, "this '{' is never closed"));
    }
    Ok(lines)
}

fn check_policy(lines: &[SourceLine<'_>], policy: &BodyPolicy) -> Result<(), BodyError> {
    use BodyErrorKind::*;
    // For each open block: does it hold directives (so the allowlist applies to its lines)?
    let mut holds_directives = vec![true];
    for line in lines {
        if line.closes {
            holds_directives.pop();
            continue;
        }
        let Some(first) = line.words.first() else {
            continue;
        };
        let name = first.text.as_str();
        if name == "import" && !policy.allow_import {
            return Err(BodyError::at(
                Import,
                first,
                "'import' reads files from the server and is not allowed for your role",
            ));
        }
        if is_snippet_definition(name) {
            return Err(BodyError::at(
                Snippet,
                first,
                format!(
                    "snippet and named-route definitions like {name} belong at the top of a Caddyfile, not in a site"
                ),
            ));
        }
        let in_directive_block = *holds_directives.last().unwrap_or(&false);
        if let Some(allowed) = &policy.allowed_directives
            && in_directive_block
            && !name.starts_with('@')
            && !allowed.iter().any(|a| a == name)
        {
            return Err(BodyError::at(
                DirectiveNotAllowed,
                first,
                format!("directive {name:?} is not allowed for your role"),
            ));
        }
        if policy.allow_import {
            for (k, word) in line.words.iter().enumerate() {
                if word.raw.contains("{$") {
                    check_environment_token(word, k == 0)?;
                }
            }
        }
        if !policy.allow_import
            && let Some(word) = line
                .words
                .iter()
                .find(|w| w.text.contains("{env.") || w.text.contains("{file."))
        {
            return Err(BodyError::at(
                HostPlaceholder,
                word,
                "{env.*} and {file.*} placeholders read the server's environment and files \
                 and are not allowed for your role",
            ));
        }
        if line.opens {
            holds_directives.push(CONTAINER_DIRECTIVES.contains(&name));
        }
    }
    Ok(())
}

fn is_snippet_definition(name: &str) -> bool {
    let name = name.strip_prefix('&').unwrap_or(name);
    name.len() >= 2 && name.starts_with('(') && name.ends_with(')')
}

/// Replays the control flow of Caddy's parser (parse.go `directives` and `directive`) over the
/// body: braces are recognised by text alone, a `}` that starts a segment ends the site block,
/// and a segment ends at the first new line outside its braces. This is the ground truth the
/// stricter layout rules above are meant to imply; it also guards the Caddy 2.6 reading.
fn check_caddy_model(tokens: &[Token], policy: &BodyPolicy) -> Result<(), BodyError> {
    use BodyErrorKind::*;
    let words: Vec<&Token> = tokens.iter().filter(|t| !t.is_comment()).collect();
    let new_line = |i: usize| i == 0 || words[i - 1].next_is_on_new_line(words[i]);
    let mut i = 0;
    while i < words.len() {
        let directive = words[i];
        if directive.text == "}" {
            return Err(BodyError::at(
                EscapesBlock,
                directive,
                "Caddy would end the site block at this '}'",
            ));
        }
        if directive.text == "import" && !policy.allow_import {
            return Err(BodyError::at(Import, directive, "'import' is not allowed"));
        }
        i += 1;
        let mut open: Vec<&Token> = Vec::new();
        while i < words.len() {
            let word = words[i];
            if word.text == "{" {
                open.push(word);
            } else if new_line(i) && open.is_empty() {
                break;
            } else if word.text == "}" {
                if open.pop().is_none() {
                    return Err(BodyError::at(
                        BracePlacement,
                        word,
                        "Caddy rejects this '}': it has no matching '{'",
                    ));
                }
            } else if word.text == "import" && new_line(i) && !policy.allow_import {
                return Err(BodyError::at(Import, word, "'import' is not allowed"));
            }
            i += 1;
        }
        if let Some(brace) = open.last() {
            return Err(BodyError::at(Unbalanced, brace, "this '{' is never closed"));
        }
    }
    Ok(())
}

/// Lays the lines out the way `caddy fmt` does: a tab per nesting level, single spaces between
/// tokens, at most one blank line in a row and none just inside a block's braces. A comment
/// after `{` moves to the next line (as `caddy fmt` moves it); one after `}` also gets its own
/// line, because `caddy fmt` would otherwise glue it to the brace with a tab.
fn normalize(lines: &[SourceLine<'_>]) -> CaddyfileBody {
    let mut out: Vec<Line> = Vec::new();
    let mut directives = Vec::new();
    let mut after_open = false;
    for line in lines {
        let blank_before =
            line.newlines_before >= 2 && !out.is_empty() && !after_open && !line.closes;
        let comment = line.comment.map(|c| c.raw.clone());
        if line.words.is_empty() {
            out.push(Line {
                depth: line.depth,
                blank_before,
                content: comment.unwrap_or_default(),
            });
            after_open = false;
            continue;
        }
        let mut content = line
            .words
            .iter()
            .map(|w| w.raw.as_str())
            .collect::<Vec<_>>()
            .join(" ");
        if line.depth == 0 && !line.closes && !line.words[0].text.starts_with('@') {
            directives.push(line.words[0].text.clone());
        }
        let separate_comment = line.opens || line.closes;
        if let Some(comment) = &comment
            && !separate_comment
        {
            content.push(' ');
            content.push_str(comment);
        }
        out.push(Line {
            depth: line.depth,
            blank_before,
            content,
        });
        if let Some(comment) = comment
            && separate_comment
        {
            out.push(Line {
                depth: line.depth + usize::from(line.opens),
                blank_before: false,
                content: comment,
            });
        }
        after_open = line.opens && line.comment.is_none();
    }
    let mut body = CaddyfileBody {
        lines: out,
        text: String::new(),
        directives,
    };
    let mut text = String::new();
    body.write_indented(&mut text, 0);
    body.text = text;
    body
}

#[cfg(test)]
pub(super) mod test_strategies {
    //! Input generators shared by the body and render property tests.

    use super::{BodyPolicy, CaddyfileBody};
    use proptest::prelude::*;

    pub const REAL_WORLD: &[&str] = &[
        "reverse_proxy localhost:8080 {\n\theader_up Host {upstream_hostport}\n\theader_up X-Real-IP {remote_host}\n\ttransport http {\n\t\tread_timeout 30s\n\t\ttls_insecure_skip_verify\n\t}\n}\n",
        "handle /api/* {\n\treverse_proxy 10.0.0.2:9000\n}\nhandle_path /static/* {\n\troot * /srv/static\n\tfile_server browse\n}\nhandle {\n\trespond \"Not found\" 404\n}\n",
        "@api {\n\tpath /api/*\n\theader Accept application/json\n\tnot path /api/internal/*\n}\nreverse_proxy @api backend:8080\n",
        "@websockets {\n\theader Connection *Upgrade*\n\theader Upgrade websocket\n}\nreverse_proxy @websockets localhost:6001\n",
        "redir https://www.example.com{uri} permanent\n",
        "root * /var/www/wordpress\nphp_fastcgi unix//run/php/php8.2-fpm.sock\nfile_server\nencode gzip zstd\n",
        "file_server browse\n",
        "respond <<HTML\n\t<!doctype html>\n\t<h1>Hello from {host}</h1>\n\tHTML 200\n",
        "encode gzip zstd\n",
        "header {\n\tStrict-Transport-Security \"max-age=31536000; includeSubDomains\"\n\tX-Frame-Options DENY\n\t-Server\n\tContent-Security-Policy \"default-src 'self'; img-src * data:\"\n}\n",
        "basicauth /admin/* {\n\talice $2a$14$Zkx19XLiW6VYouLHR5NmfOFU0z2GTNmpkT/5qqR7hx4IjWJPDhjvG\n}\nrespond /admin/* \"secret\" 200\n",
        "route {\n\turi strip_prefix /app\n\trewrite * /index.html\n\treverse_proxy 127.0.0.1:3000\n}\n",
        "handle_errors {\n\trespond \"{err.status_code} {err.status_text}\"\n}\n",
        "request_body {\n\tmax_size 10MB\n}\n",
        "try_files {path} /index.html\n",
        "templates\n",
    ];

    /// Fragments chosen to provoke every lexer and structure rule at once.
    fn nasty_piece() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec![
            "{", "}", " {", "\n", "\n", "\n}\n", " ", "\t", "\"", "`", "\\", "\\\n", "#", " # c",
            "<<EOF\n", "EOF", "\n\tEOF", "import", "respond", "handle", "@m", "(s)", "&(r)",
            "{$X}", "{$", "{uri}", "{}", "evil.com", "\"}\"", "`{`", "\\}", "\\<<", "a", "b",
            "{env.X}",
        ])
    }

    fn word() -> impl Strategy<Value = String> {
        prop_oneof![
            12 => "[a-z_@]{1,6}",
            1 => Just("{uri}".to_string()),
            1 => Just("\"a } b\"".to_string()),
            1 => Just("`}\n{`".to_string()),
            1 => Just("\"}\"".to_string()),
            1 => Just("\\}".to_string()),
            1 => Just("{}".to_string()),
            1 => Just("import".to_string()),
            1 => Just("(snip)".to_string()),
            1 => Just("# note".to_string()),
            1 => Just("\\".to_string()),
            1 => Just("<<EOF".to_string()),
            1 => Just("{$HOME}".to_string()),
            1 => Just("{$X}}".to_string()),
        ]
    }

    /// Mostly well-formed lines, so that a good share of inputs is accepted.
    fn line() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => prop::collection::vec(word(), 1..4).prop_map(|w| w.join(" ")),
            3 => prop::collection::vec(word(), 1..3).prop_map(|w| format!("{} {{", w.join(" "))),
            3 => Just("}".to_string()),
            1 => prop::collection::vec(word(), 0..3)
                .prop_map(|w| format!("respond <<EOF\n{}\n\tEOF 200", w.join("\n"))),
            1 => Just(String::new()),
        ]
    }

    /// Balanced, nested blocks with the occasional hostile word, to reach deep structure.
    fn tree() -> impl Strategy<Value = String> {
        let calm_word = prop_oneof![40 => "[a-z_@]{1,6}".boxed(), 1 => word().boxed()];
        let words = prop::collection::vec(calm_word, 1..4).prop_map(|w| w.join(" "));
        let leaf = prop_oneof![
            6 => words.clone(),
            1 => Just("respond <<EOF\n\t{ a }\n\tEOF 200".to_string()),
            1 => Just("# comment } {".to_string()),
            1 => Just(String::new()),
        ];
        leaf.prop_recursive(4, 32, 5, move |inner| {
            (words.clone(), prop::collection::vec(inner, 0..5)).prop_map(|(head, body)| {
                let mut block = format!("{head} {{\n");
                for line in body {
                    block.push_str(&line);
                    block.push('\n');
                }
                block.push('}');
                block
            })
        })
    }

    pub fn soup() -> impl Strategy<Value = String> {
        prop_oneof![
            1 => prop::collection::vec(nasty_piece(), 0..40).prop_map(|v| v.concat()),
            1 => prop::collection::vec(line(), 0..12).prop_map(|v| v.join("\n")),
            2 => prop::collection::vec(tree(), 0..5).prop_map(|v| v.join("\n")),
        ]
    }

    /// A body the admin policy accepted; rejected inputs become the empty body.
    pub fn accepted_admin_body() -> impl Strategy<Value = CaddyfileBody> {
        soup().prop_map(|s| CaddyfileBody::parse(&s, &BodyPolicy::admin()).unwrap_or_default())
    }

    pub fn real_world_body() -> impl Strategy<Value = CaddyfileBody> {
        prop::sample::select(REAL_WORLD)
            .prop_map(|s| CaddyfileBody::parse(s, &BodyPolicy::admin()).expect("real-world body"))
    }
}

#[cfg(test)]
mod tests {
    use super::test_strategies::REAL_WORLD;
    use super::*;

    #[test]
    fn a_stored_body_reads_back_exactly_as_it_was_saved() {
        let policy = BodyPolicy::admin();
        let saved = CaddyfileBody::parse(
            "@api path /api/*\nhandle @api {\nreverse_proxy 127.0.0.1:9000\n}\nrespond `a\nb` 200",
            &policy,
        )
        .unwrap();
        let stored = CaddyfileBody::parse_stored(saved.as_str(), &policy).unwrap();
        assert_eq!(stored, saved);
        assert!(CaddyfileBody::parse_stored("respond {", &policy).is_err());
    }

    fn admin(input: &str) -> Result<CaddyfileBody, BodyError> {
        CaddyfileBody::parse(input, &BodyPolicy::admin())
    }

    fn user(input: &str) -> Result<CaddyfileBody, BodyError> {
        CaddyfileBody::parse(input, &BodyPolicy::default_user())
    }

    fn kind(result: Result<CaddyfileBody, BodyError>) -> BodyErrorKind {
        result.expect_err("body should be rejected").kind()
    }

    #[test]
    fn real_world_bodies_are_accepted_for_admins() {
        for body in REAL_WORLD {
            let parsed = admin(body).unwrap_or_else(|e| panic!("{body:?}: {e}"));
            assert_eq!(parsed.as_str(), *body, "already in standard form");
        }
    }

    #[test]
    fn real_world_bodies_made_of_allowed_directives_are_accepted_for_users() {
        for body in [
            REAL_WORLD[0],
            REAL_WORLD[2],
            REAL_WORLD[3],
            REAL_WORLD[4],
            REAL_WORLD[9],
        ] {
            user(body).unwrap_or_else(|e| panic!("{body:?}: {e}"));
        }
        user(REAL_WORLD[10]).unwrap();
        user(REAL_WORLD[11]).unwrap();
    }

    #[test]
    fn balanced_nested_blocks_are_accepted() {
        let body = admin("handle {\n route {\n  respond x\n }\n}").unwrap();
        assert_eq!(
            body.as_str(),
            "handle {\n\troute {\n\t\trespond x\n\t}\n}\n"
        );
    }

    #[test]
    fn an_unclosed_block_is_rejected_at_its_brace() {
        let e = admin("respond x\nhandle {\n\trespond y\n").unwrap_err();
        assert_eq!(
            (e.kind(), e.line(), e.column()),
            (BodyErrorKind::Unbalanced, 2, 8)
        );
        assert_eq!(e.to_string(), "line 2, column 8: this '{' is never closed");
    }

    #[test]
    fn body_closing_its_block_to_open_a_site_is_rejected() {
        let attack = "respond ok\n}\nevil.com {\nroot * /\nfile_server\n}\nother {";
        let e = admin(attack).unwrap_err();
        assert_eq!(
            (e.kind(), e.line(), e.column()),
            (BodyErrorKind::EscapesBlock, 2, 1)
        );
        assert!(e.message().contains("close the site block"));
    }

    #[test]
    fn body_closing_its_block_to_open_global_options_is_rejected() {
        let attack = "}\n{\n\tadmin 0.0.0.0:2019\n}\nx.com {\n\trespond hi\n";
        assert_eq!(kind(admin(attack)), BodyErrorKind::EscapesBlock);
    }

    #[test]
    fn a_line_that_only_opens_an_anonymous_block_is_rejected() {
        let e = admin("respond x\n{\n}\n").unwrap_err();
        assert_eq!(
            (e.kind(), e.line(), e.column()),
            (BodyErrorKind::BracePlacement, 2, 1)
        );
        assert_eq!(
            kind(admin("{\n\trespond x\n}")),
            BodyErrorKind::BracePlacement
        );
    }

    #[test]
    fn an_opening_brace_must_end_its_line() {
        let e = admin("header {  X-Foo bar }\n").unwrap_err();
        assert_eq!(
            (e.kind(), e.line(), e.column()),
            (BodyErrorKind::BracePlacement, 1, 8)
        );
        assert_eq!(
            kind(admin("reverse_proxy a\n{\n}")),
            BodyErrorKind::BracePlacement
        );
    }

    #[test]
    fn a_closing_brace_must_be_alone_on_its_line() {
        let e = admin("handle {\n\trespond x }\n}\n").unwrap_err();
        assert_eq!(
            (e.kind(), e.line(), e.column()),
            (BodyErrorKind::BracePlacement, 2, 12)
        );
        assert_eq!(
            kind(admin("handle {\n}  respond x\n")),
            BodyErrorKind::BracePlacement
        );
    }

    #[test]
    fn a_quoted_brace_is_a_brace_to_caddy_and_is_rejected() {
        // caddy 2.6.2 ends the site block at a line holding only "}".
        for attack in ["respond hi\n\"}\"\nb.com {\n", "respond \"{\"\n", "`}`\n"] {
            assert_eq!(
                kind(admin(attack)),
                BodyErrorKind::BracePlacement,
                "{attack:?}"
            );
        }
    }

    #[test]
    fn braces_inside_quotes_backticks_heredocs_and_comments_are_fine() {
        for body in [
            "respond \"} evil.com {\"\n",
            "respond `}\nevil.com {`\n",
            "# }\n# evil.com {\nrespond x\n",
            "respond x # } {\n",
            "respond \\}\n",
            "respond <<EOF\n\tevil.com { } here\n\tEOF\n",
        ] {
            admin(body).unwrap_or_else(|e| panic!("{body:?}: {e}"));
        }
    }

    #[test]
    fn import_is_rejected_for_users_at_any_depth_and_allowed_for_admins() {
        let e = CaddyfileBody::parse(
            "handle {\n\timport /etc/caddy/secrets\n}",
            &BodyPolicy::restricted(["handle", "import"]),
        )
        .unwrap_err();
        assert_eq!(
            (e.kind(), e.line(), e.column()),
            (BodyErrorKind::Import, 2, 2)
        );
        assert_eq!(kind(user("\"import\" x\n")), BodyErrorKind::Import);
        let body = admin("import common\nhandle {\n\timport snippets/*\n}").unwrap();
        assert_eq!(body.directives(), ["import", "handle"]);
    }

    #[test]
    fn directives_outside_the_allowlist_are_rejected_by_name() {
        let e = user("respond ok\n\nroot * /etc\nfile_server browse\n").unwrap_err();
        assert_eq!(
            (e.kind(), e.line(), e.column()),
            (BodyErrorKind::DirectiveNotAllowed, 3, 1)
        );
        assert_eq!(
            e.to_string(),
            "line 3, column 1: directive \"root\" is not allowed for your role"
        );
    }

    #[test]
    fn the_allowlist_also_applies_inside_route_like_blocks() {
        let e =
            user("handle /x/* {\n\troute {\n\t\troot * /\n\t\tfile_server\n\t}\n}").unwrap_err();
        assert_eq!(
            (e.kind(), e.line()),
            (BodyErrorKind::DirectiveNotAllowed, 3)
        );
        let nested = "reverse_proxy a:1 {\n\thandle_response {\n\t\tfile_server\n\t}\n}";
        assert_eq!(kind(user(nested)), BodyErrorKind::DirectiveNotAllowed);
        // Option blocks hold subdirectives, which are not directives.
        user("reverse_proxy a:1 {\n\tlb_policy first\n\ttransport http {\n\t\tversions 2\n\t}\n}")
            .unwrap();
    }

    #[test]
    fn named_matchers_are_allowed_at_top_level_for_everyone() {
        let body = user("@api path /api/*\nreverse_proxy @api b:1\n").unwrap();
        assert_eq!(body.directives(), ["reverse_proxy"]);
    }

    #[test]
    fn snippet_definitions_are_rejected_for_everyone() {
        let e = admin("(common) {\n\theader X a\n}").unwrap_err();
        assert_eq!(
            (e.kind(), e.line(), e.column()),
            (BodyErrorKind::Snippet, 1, 1)
        );
        assert_eq!(
            kind(admin("&(route) {\n\trespond a\n}")),
            BodyErrorKind::Snippet
        );
    }

    #[test]
    fn control_characters_are_rejected_with_their_position() {
        let e = admin("respond ok\nrespond a\u{0}b").unwrap_err();
        assert_eq!(
            (e.kind(), e.line(), e.column()),
            (BodyErrorKind::ControlCharacter, 2, 10)
        );
        assert_eq!(kind(admin("a\u{1b}[31m")), BodyErrorKind::ControlCharacter);
        assert_eq!(kind(admin("a\rb")), BodyErrorKind::ControlCharacter);
        assert_eq!(
            kind(admin("\u{feff}respond x")),
            BodyErrorKind::ControlCharacter
        );
    }

    #[test]
    fn windows_line_endings_are_accepted_and_normalized() {
        let body = admin("handle {\r\n\trespond x\r\n}\r\n").unwrap();
        assert_eq!(body.as_str(), "handle {\n\trespond x\n}\n");
    }

    #[test]
    fn environment_placeholders_are_refused_for_users_and_must_be_tidy_for_admins() {
        // Caddy substitutes {$...} in the raw text, so an unclosed one would eat our closing
        // brace even from inside a comment.
        assert_eq!(
            kind(user("respond {$SECRET}")),
            BodyErrorKind::EnvironmentPlaceholder
        );
        assert_eq!(
            kind(admin("# {$NOPE\n")),
            BodyErrorKind::EnvironmentPlaceholder
        );
        assert_eq!(
            kind(admin("respond \"{$A B}\"")),
            BodyErrorKind::EnvironmentPlaceholder
        );
        admin("reverse_proxy {$UPSTREAM:localhost:8080}\nrespond {$GREETING} \"a{$B}\"\n").unwrap();
        admin("reverse_proxy http://{$HOST:localhost}:8080\n").unwrap();
    }

    #[test]
    fn environment_placeholders_that_would_change_the_structure_when_unset_are_rejected() {
        // With $X unset Caddy reads `}` (closing the site), `<<EOF` + newline (a heredoc),
        // `"...` (a quote), `#...` (a comment) or `foo\` (a line continuation).
        for attack in [
            "respond ok\n{$X}}\n",
            "respond {$X}<<EOF\n",
            "respond {$X}\"a\n",
            "respond {$X}#x y\n",
            "respond foo\\{$X}\n",
            "{$X} {\n}\n",
            "respond <<EOF\n\t{$X}\n\tEOF\n",
        ] {
            assert_eq!(
                kind(admin(attack)),
                BodyErrorKind::EnvironmentPlaceholder,
                "{attack:?}"
            );
        }
    }

    #[test]
    fn runtime_placeholders_that_read_the_host_are_refused_for_users() {
        let e = user("respond \"{env.AWS_SECRET_ACCESS_KEY}\"").unwrap_err();
        assert_eq!((e.kind(), e.column()), (BodyErrorKind::HostPlaceholder, 9));
        assert_eq!(
            kind(user("header X {file./etc/passwd}")),
            BodyErrorKind::HostPlaceholder
        );
        admin("respond {env.HOSTNAME}").unwrap();
        user("respond {http.request.uri}").unwrap();
    }

    #[test]
    fn lexer_errors_become_body_errors_with_position() {
        let e = admin("respond ok\nrespond \"never closed\n}\nevil {").unwrap_err();
        assert_eq!(
            (e.kind(), e.line(), e.column()),
            (BodyErrorKind::Syntax, 2, 9)
        );
        let e = admin("respond <<EOF\n}\nevil.com {").unwrap_err();
        assert_eq!(
            (e.kind(), e.line(), e.column()),
            (BodyErrorKind::Syntax, 1, 9)
        );
    }

    #[test]
    fn heredoc_hiding_a_site_is_rejected_because_caddy_2_6_would_read_it() {
        let attack = "respond <<EOF\n}\nevil.com {\n\troot * /\n\tfile_server\n}\nx.com {\nEOF\n";
        let e = admin(attack).unwrap_err();
        assert_eq!((e.kind(), e.line()), (BodyErrorKind::EscapesBlock, 2));
        assert!(e.message().starts_with("as read by Caddy 2.6"));
    }

    #[test]
    fn heredoc_smuggling_directives_past_the_allowlist_is_rejected() {
        let attack = "respond <<file_server\nroot * /\nfile_server\n";
        let e = user(attack).unwrap_err();
        assert_eq!(
            (e.kind(), e.line()),
            (BodyErrorKind::DirectiveNotAllowed, 2)
        );
    }

    #[test]
    fn heredoc_with_balanced_braces_is_fine_for_admins_but_unbalanced_ones_are_not() {
        admin("respond <<HTML\n\t<style>\n\tbody {\n\t}\n\t</style>\n\tHTML 200\n").unwrap();
        admin("respond <<HTML\n\t<style> body { color: red } </style>\n\tHTML 200\n").unwrap();
        // Caddy 2.6 would count this '{' and swallow the following sites.
        let unbalanced = "respond <<HTML\n\tif (a) {\n\tHTML 200\n";
        let e = admin(unbalanced).unwrap_err();
        assert_eq!((e.kind(), e.line()), (BodyErrorKind::Unbalanced, 2));
        assert!(e.message().starts_with("as read by Caddy 2.6"), "{e}");
    }

    #[test]
    fn odd_heredocs_are_rejected() {
        assert_eq!(kind(admin("respond <<EOF\nEOF\n")), BodyErrorKind::Heredoc);
        assert_eq!(
            kind(admin("respond <<EOF\nxx a\nxxEOF\n")),
            BodyErrorKind::Heredoc
        );
        // `<<EOF` followed by a space is a plain word, but on its own at the end of a line it
        // would become a heredoc opener once reformatted.
        assert_eq!(kind(admin("respond <<EOF \nfoo")), BodyErrorKind::Heredoc);
        admin("respond <<EOF 200\n").unwrap();
    }

    #[test]
    fn a_backslash_in_a_comment_is_rejected() {
        let e = admin("respond hi # C:\\temp\nfile_server").unwrap_err();
        assert_eq!(
            (e.kind(), e.line(), e.column()),
            (BodyErrorKind::Comment, 1, 12)
        );
    }

    #[test]
    fn line_continuations_are_joined() {
        let body = admin("reverse_proxy a:1 \\\n\tb:2 \\\n\tc:3\n").unwrap();
        assert_eq!(body.as_str(), "reverse_proxy a:1 b:2 c:3\n");
    }

    #[test]
    fn a_line_starting_with_a_backslash_is_rejected() {
        assert_eq!(
            kind(admin("respond x\n\\{foo}\n")),
            BodyErrorKind::BracePlacement
        );
    }

    #[test]
    fn stray_backslashes_that_cannot_be_reproduced_are_rejected() {
        assert_eq!(
            kind(admin("respond a \\ b")),
            BodyErrorKind::Unrepresentable
        );
    }

    #[test]
    fn unquoted_empty_braces_at_line_end_are_rejected_like_caddy_does() {
        assert_eq!(kind(admin("respond {}")), BodyErrorKind::BracePlacement);
        admin("respond \"{}\"").unwrap();
        admin("respond {} 200").unwrap();
    }

    #[test]
    fn nesting_is_limited() {
        let deep = |n: usize| {
            let mut s = String::new();
            for _ in 0..n {
                s.push_str("route {\n");
            }
            for _ in 0..n {
                s.push_str("}\n");
            }
            s
        };
        admin(&deep(MAX_NESTING)).unwrap();
        assert_eq!(kind(admin(&deep(MAX_NESTING + 1))), BodyErrorKind::TooDeep);
    }

    #[test]
    fn oversized_bodies_are_rejected_before_lexing() {
        let big = "respond x\n".repeat(MAX_BODY_BYTES / 10 + 1);
        assert_eq!(kind(admin(&big)), BodyErrorKind::TooLarge);
    }

    #[test]
    fn normalization_follows_caddy_fmt() {
        let messy = "\n\n   reverse_proxy    localhost:8080   \"a  b\"  {   # upstream\n\n\n  header_up X-A  `x  y`\n\n\n\n  header_up X-B b # why\n\n}   # done\n\n\n\n# trailing note\nrespond   ok\n\n\n";
        let body = admin(messy).unwrap();
        assert_eq!(
            body.as_str(),
            "reverse_proxy localhost:8080 \"a  b\" {\n\t# upstream\n\n\theader_up X-A `x  y`\n\n\theader_up X-B b # why\n}\n# done\n\n# trailing note\nrespond ok\n"
        );
        assert_eq!(body.directives(), ["reverse_proxy", "respond"]);
    }

    #[test]
    fn heredocs_and_multiline_strings_are_kept_verbatim() {
        let input = "  handle {\n respond <<HTML\n    <p>\n      hi\n    </p>\n    HTML 200\n    respond \"a\n  b\"\n}";
        let body = admin(input).unwrap();
        assert_eq!(
            body.as_str(),
            "handle {\n\trespond <<HTML\n    <p>\n      hi\n    </p>\n    HTML 200\n\trespond \"a\n  b\"\n}\n"
        );
    }

    #[test]
    fn an_empty_body_is_valid() {
        let body = admin(" \n\n# just a comment\n").unwrap();
        assert_eq!(body.as_str(), "# just a comment\n");
        assert!(admin("").unwrap().is_empty());
        assert!(admin("").unwrap().directives().is_empty());
    }

    mod properties {
        use super::super::test_strategies::soup;
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

            #[test]
            fn normalizing_an_accepted_body_is_idempotent(input in soup()) {
                if let Ok(body) = admin(&input) {
                    let again = admin(body.as_str()).expect("normalized body is accepted");
                    prop_assert_eq!(again.as_str(), body.as_str());
                    prop_assert_eq!(again.directives(), body.directives());
                }
            }

            #[test]
            fn parse_never_panics_on_arbitrary_text(input in "\\PC{0,80}") {
                let _ = admin(&input);
                let _ = user(&input);
            }
        }
    }
}
