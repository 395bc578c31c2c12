//! Caddyfile tokenizer that reproduces Caddy's own lexer (caddyconfig/caddyfile/lexer.go)
//! rule for rule, so that what we validate is exactly what Caddy will read.
//!
//! Two dialects are supported because they disagree on real input: Caddy 2.7+ understands
//! heredocs (`<<END ... END`), while Caddy 2.6 (the Debian package) reads the same bytes as
//! ordinary tokens. Quirks are mirrored deliberately, including the surprising ones: a
//! backslash anywhere in a comment turns the comment's newline into a line continuation, and
//! a backslash before `<` suppresses heredoc detection. Where Caddy silently accepts broken
//! input (an unterminated quote at end of file) this lexer reports an error instead, because a
//! token that swallows the rest of the input is never what the author meant.

use std::fmt;

/// What a token is. Caddy itself discards comments; we keep them on request so that the
/// normalizer can re-emit them the way `caddy fmt` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Word,
    Comment,
}

/// How a word token was quoted in the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quote {
    None,
    Double,
    Backtick,
    Heredoc,
}

/// One token. `line` and `column` are physical, 1-based positions of the first character of
/// `raw` (columns count Unicode scalar values, a tab counts as one). `logical_line` is the line
/// number Caddy itself assigns, which stays put across line continuations and is what decides
/// whether two tokens are "on the same line" for Caddy's parser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub kind: TokenKind,
    /// The value as Caddy sees it (quotes removed, `\"` unescaped, heredoc indentation stripped).
    pub text: String,
    /// The exact source spelling, including quotes, backticks or the whole heredoc.
    pub raw: String,
    pub quote: Quote,
    pub line: usize,
    pub column: usize,
    pub logical_line: usize,
    /// Caddy's `NumLineBreaks`: newlines in `text`, plus two for a heredoc.
    pub(super) line_breaks: usize,
    /// Unescaped newlines between the previous token (or comment) and this one.
    pub(super) newlines_before: usize,
    /// Comments only: a backslash in the comment made Caddy treat its newline as a continuation.
    pub(super) continues_line: bool,
}

impl Token {
    pub fn quoted(&self) -> bool {
        self.quote != Quote::None
    }

    pub fn is_comment(&self) -> bool {
        self.kind == TokenKind::Comment
    }

    /// Caddy's `isNextOnNewLine`: whether `next` starts a new line after this token.
    pub fn next_is_on_new_line(&self, next: &Token) -> bool {
        self.logical_line + self.line_breaks < next.logical_line
    }
}

/// Which lexer dialect to emulate, and whether to report comments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LexOptions {
    /// `true` for Caddy 2.7 and later; `false` reproduces Caddy 2.6, which has no heredocs.
    pub heredocs: bool,
    /// Emit comments as [`TokenKind::Comment`] tokens instead of dropping them.
    pub comments: bool,
}

impl LexOptions {
    pub const CADDY_2_7: LexOptions = LexOptions {
        heredocs: true,
        comments: false,
    };
    pub const CADDY_2_6: LexOptions = LexOptions {
        heredocs: false,
        comments: false,
    };

    pub fn with_comments(self) -> LexOptions {
        LexOptions {
            comments: true,
            ..self
        }
    }
}

impl Default for LexOptions {
    fn default() -> Self {
        LexOptions::CADDY_2_7
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LexErrorKind {
    UnterminatedQuote,
    UnterminatedBacktick,
    UnterminatedHeredoc,
    BadHeredocMarker,
    HeredocIndentation,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LexError {
    pub kind: LexErrorKind,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for LexError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}, column {}: {}",
            self.line, self.column, self.message
        )
    }
}

impl std::error::Error for LexError {}

/// Tokenizes with Caddy 2.7+ rules, dropping comments.
pub fn tokenize(input: &str) -> Result<Vec<Token>, LexError> {
    tokenize_with(input, LexOptions::default())
}

pub fn tokenize_with(input: &str, options: LexOptions) -> Result<Vec<Token>, LexError> {
    let mut lexer = Lexer::new(input, options);
    let mut tokens = Vec::new();
    while let Some(token) = lexer.next_token()? {
        tokens.push(token);
    }
    Ok(tokens)
}

/// Where a token starts: char index, physical position, and the blank-line count before it.
#[derive(Clone, Copy)]
struct Start {
    index: usize,
    line: usize,
    column: usize,
    newlines_before: usize,
    caddy_line: usize,
}

struct Lexer {
    chars: Vec<char>,
    pos: usize,
    line: usize,
    column: usize,
    /// Caddy's `l.line` and `l.skippedLines`, tracked exactly as lexer.go does.
    caddy_line: usize,
    skipped_lines: usize,
    pending_newlines: usize,
    options: LexOptions,
}

impl Lexer {
    fn new(input: &str, options: LexOptions) -> Lexer {
        let mut chars: Vec<char> = input.chars().collect();
        // Caddy discards a leading byte order mark.
        if chars.first() == Some(&'\u{feff}') {
            chars.remove(0);
        }
        Lexer {
            chars,
            pos: 0,
            line: 1,
            column: 1,
            caddy_line: 1,
            skipped_lines: 0,
            pending_newlines: 0,
            options,
        }
    }

    fn start_here(&mut self, index: usize, line: usize, column: usize) -> Start {
        Start {
            index,
            line,
            column,
            newlines_before: std::mem::take(&mut self.pending_newlines),
            caddy_line: self.caddy_line,
        }
    }

    fn word(&self, start: Start, end: usize, text: String, quote: Quote) -> Token {
        let newlines = text.matches('\n').count();
        let line_breaks = if quote == Quote::Heredoc {
            newlines + 2
        } else {
            newlines
        };
        Token {
            kind: TokenKind::Word,
            text,
            raw: self.chars[start.index..end].iter().collect(),
            quote,
            line: start.line,
            column: start.column,
            logical_line: start.caddy_line,
            line_breaks,
            newlines_before: start.newlines_before,
            continues_line: false,
        }
    }

    fn comment(&self, start: Start, end: usize, continues_line: bool) -> Token {
        let raw: String = self.chars[start.index..end].iter().collect();
        let raw = raw.trim_end().to_string();
        Token {
            kind: TokenKind::Comment,
            text: raw.clone(),
            raw,
            quote: Quote::None,
            line: start.line,
            column: start.column,
            logical_line: start.caddy_line,
            line_breaks: 0,
            newlines_before: start.newlines_before,
            continues_line,
        }
    }

    /// One iteration of lexer.go's `next()`. The order of the checks below is significant and
    /// follows Caddy's exactly; do not reorder them.
    fn next_token(&mut self) -> Result<Option<Token>, LexError> {
        let mut val = String::new();
        let mut comment: Option<Start> = None;
        let (mut quoted, mut bt_quoted, mut in_heredoc) = (false, false, false);
        let (mut heredoc_escaped, mut escaped) = (false, false);
        let mut marker = String::new();
        let mut start: Option<Start> = None;
        let mut end = 0;

        loop {
            let Some(&ch) = self.chars.get(self.pos) else {
                return self.at_eof(
                    val, comment, start, end, quoted, bt_quoted, in_heredoc, &marker,
                );
            };
            let (index, ch_line, ch_column) = (self.pos, self.line, self.column);
            self.pos += 1;
            if ch == '\n' {
                self.line += 1;
                self.column = 1;
            } else {
                self.column += 1;
            }

            if self.options.heredocs
                && !(quoted || bt_quoted)
                && !(in_heredoc || heredoc_escaped)
                && val.starts_with("<<")
            {
                let start = start.expect("a token with text has a start");
                if ch == ' ' {
                    return Ok(Some(self.word(start, end, val, Quote::None)));
                }
                if ch == '\r' {
                    continue;
                }
                if ch == '\n' {
                    marker = heredoc_marker(&val).map_err(|message| LexError {
                        kind: LexErrorKind::BadHeredocMarker,
                        line: start.line,
                        column: start.column,
                        message,
                    })?;
                    in_heredoc = true;
                    self.skipped_lines += 1;
                    val.clear();
                    continue;
                }
                val.push(ch);
                end = index + 1;
                continue;
            }

            if in_heredoc {
                val.push(ch);
                if ch == '\n' {
                    self.skipped_lines += 1;
                }
                if val.ends_with(marker.as_str()) {
                    let start = start.expect("a heredoc has a start");
                    let text =
                        finalize_heredoc(&val, &marker).map_err(|(offset, message)| LexError {
                            kind: LexErrorKind::HeredocIndentation,
                            line: start.line + 1 + offset,
                            column: 1,
                            message,
                        })?;
                    self.caddy_line += self.skipped_lines;
                    self.skipped_lines = 0;
                    return Ok(Some(self.word(start, index + 1, text, Quote::Heredoc)));
                }
                continue;
            }

            if !escaped && !bt_quoted && ch == '\\' {
                escaped = true;
                continue;
            }

            if quoted || bt_quoted {
                if quoted && escaped {
                    // Only \" is an escape inside double quotes; anything else stays literal.
                    if ch != '"' {
                        val.push('\\');
                    }
                    escaped = false;
                } else if (quoted && ch == '"') || (bt_quoted && ch == '`') {
                    let quote = if quoted {
                        Quote::Double
                    } else {
                        Quote::Backtick
                    };
                    let start = start.expect("a quoted token has a start");
                    return Ok(Some(self.word(start, index + 1, val, quote)));
                }
                if ch == '\n' {
                    self.caddy_line += 1 + self.skipped_lines;
                    self.skipped_lines = 0;
                }
                val.push(ch);
                continue;
            }

            if ch.is_whitespace() {
                // Rust's is_whitespace and Go's unicode.IsSpace cover the same code points.
                if ch == '\r' {
                    continue;
                }
                if ch == '\n' {
                    let continuation = escaped;
                    if escaped {
                        self.skipped_lines += 1;
                        escaped = false;
                    } else {
                        self.caddy_line += 1 + self.skipped_lines;
                        self.skipped_lines = 0;
                        self.pending_newlines += 1;
                    }
                    if let Some(comment_start) = comment.take()
                        && self.options.comments
                    {
                        return Ok(Some(self.comment(comment_start, index, continuation)));
                    }
                }
                if !val.is_empty() {
                    let start = start.expect("a token with text has a start");
                    return Ok(Some(self.word(start, end, val, Quote::None)));
                }
                continue;
            }

            // A comment only starts at the beginning of a token; `a#b` is one word.
            if ch == '#' && val.is_empty() && comment.is_none() {
                comment = Some(self.start_here(index, ch_line, ch_column));
            }
            if comment.is_some() {
                continue;
            }

            if val.is_empty() {
                // Include an escaping backslash that directly precedes the token in its spelling.
                let begins_with_escape = escaped && index > 0 && self.chars[index - 1] == '\\';
                start = Some(if begins_with_escape {
                    self.start_here(index - 1, ch_line, ch_column - 1)
                } else {
                    self.start_here(index, ch_line, ch_column)
                });
                if ch == '"' {
                    quoted = true;
                    continue;
                }
                if ch == '`' {
                    bt_quoted = true;
                    continue;
                }
            }

            if escaped {
                if self.options.heredocs && ch == '<' {
                    heredoc_escaped = true;
                } else {
                    val.push('\\');
                }
                escaped = false;
            }
            val.push(ch);
            end = index + 1;
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn at_eof(
        &mut self,
        val: String,
        comment: Option<Start>,
        start: Option<Start>,
        end: usize,
        quoted: bool,
        bt_quoted: bool,
        in_heredoc: bool,
        marker: &str,
    ) -> Result<Option<Token>, LexError> {
        let error = |kind, message: String| {
            let start = start.expect("an open construct has a start");
            Err(LexError {
                kind,
                line: start.line,
                column: start.column,
                message,
            })
        };
        if in_heredoc {
            return error(
                LexErrorKind::UnterminatedHeredoc,
                format!("unterminated heredoc: closing marker {marker} not found"),
            );
        }
        if quoted {
            return error(
                LexErrorKind::UnterminatedQuote,
                "unterminated double-quoted string".to_string(),
            );
        }
        if bt_quoted {
            return error(
                LexErrorKind::UnterminatedBacktick,
                "unterminated backtick-quoted string".to_string(),
            );
        }
        if let Some(comment_start) = comment {
            if self.options.comments {
                return Ok(Some(self.comment(comment_start, self.chars.len(), false)));
            }
            return Ok(None);
        }
        if !val.is_empty() {
            let start = start.expect("a token with text has a start");
            return Ok(Some(self.word(start, end, val, Quote::None)));
        }
        Ok(None)
    }
}

/// Validates the opening `<<MARKER` (already known to start with `<<`) as Caddy does.
fn heredoc_marker(opener: &str) -> Result<String, String> {
    if opener.len() == 2 {
        return Err("missing heredoc marker after '<<'".to_string());
    }
    if opener.starts_with("<<<") {
        return Err("too many '<' for a heredoc; use exactly two, for example <<END".to_string());
    }
    let marker = &opener[2..];
    let valid = marker
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !valid {
        return Err(format!(
            "heredoc marker must contain only letters, digits, '-' and '_'; got {marker:?}"
        ));
    }
    Ok(marker.to_string())
}

/// lexer.go's `finalizeHeredoc`: the whitespace in front of the closing marker is stripped from
/// every line, which must all start with exactly that whitespace (empty lines excepted). On
/// failure returns the 0-based content line that did not match.
fn finalize_heredoc(val: &str, marker: &str) -> Result<String, (usize, String)> {
    let content_end = val.rfind('\n').map_or(0, |i| i + 1);
    let padding = &val[content_end..val.len() - marker.len()];
    let mut out = String::new();
    let content = &val[..content_end];
    let mut lines: Vec<&str> = content.split('\n').collect();
    lines.pop();
    for (offset, line) in lines.into_iter().enumerate() {
        if line.is_empty() || line == "\r" {
            out.push('\n');
            continue;
        }
        let Some(rest) = line.strip_prefix(padding) else {
            return Err((
                offset,
                format!(
                    "heredoc line is not indented like its closing marker {marker} \
                     (expected leading {padding:?})"
                ),
            ));
        };
        out.extend(rest.chars().filter(|&c| c != '\r'));
        out.push('\n');
    }
    if out.ends_with('\n') {
        out.pop();
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(input: &str) -> Vec<String> {
        tokenize(input)
            .unwrap()
            .into_iter()
            .map(|t| t.text)
            .collect()
    }

    fn lex_err(input: &str) -> LexError {
        tokenize(input).unwrap_err()
    }

    #[test]
    fn whitespace_and_newlines_separate_tokens() {
        assert_eq!(texts("a  b\t c\n\n  d\u{a0}e"), ["a", "b", "c", "d", "e"]);
    }

    #[test]
    fn tokens_carry_physical_line_and_column() {
        let tokens = tokenize("site {\n\treverse_proxy  localhost:8080\n}").unwrap();
        let at: Vec<_> = tokens
            .iter()
            .map(|t| (t.text.as_str(), t.line, t.column))
            .collect();
        assert_eq!(
            at,
            [
                ("site", 1, 1),
                ("{", 1, 6),
                ("reverse_proxy", 2, 2),
                ("localhost:8080", 2, 17),
                ("}", 3, 1)
            ]
        );
    }

    #[test]
    fn braces_are_ordinary_tokens_when_separated_by_space() {
        assert_eq!(texts("a { b }"), ["a", "{", "b", "}"]);
        assert_eq!(texts("{uri}{path}"), ["{uri}{path}"]);
    }

    #[test]
    fn comments_start_only_at_the_beginning_of_a_token() {
        assert_eq!(texts("a # b c\nd"), ["a", "d"]);
        assert_eq!(texts("a#b c"), ["a#b", "c"]);
        assert_eq!(texts("#only\nx"), ["x"]);
    }

    #[test]
    fn comments_are_reported_when_asked_for() {
        let tokens = tokenize_with(
            "a # note  \n# own line",
            LexOptions::default().with_comments(),
        )
        .unwrap();
        assert_eq!(tokens[1].kind, TokenKind::Comment);
        assert_eq!(tokens[1].text, "# note");
        assert_eq!((tokens[1].line, tokens[1].column), (1, 3));
        assert_eq!(tokens[2].text, "# own line");
        assert!(tokens[2].is_comment());
    }

    #[test]
    fn a_backslash_inside_a_comment_continues_the_line_like_caddy_does() {
        // Verified against caddy 2.6.2: `respond hi # c:\x` swallows the next line as arguments.
        let tokens = tokenize("respond hi # c:\\x\nfile_server").unwrap();
        assert!(!tokens[1].next_is_on_new_line(&tokens[2]));
        let with_comments =
            tokenize_with("a # x\\y\nb", LexOptions::default().with_comments()).unwrap();
        assert!(with_comments[1].continues_line);
    }

    #[test]
    fn double_quotes_group_words_and_only_unescape_quotes() {
        let tokens = tokenize(r#"respond "hello \"world\" \n \{x}" 200"#).unwrap();
        assert_eq!(tokens[1].text, r#"hello "world" \n \{x}"#);
        assert_eq!(tokens[1].quote, Quote::Double);
        assert_eq!(tokens[1].raw, r#""hello \"world\" \n \{x}""#);
        assert!(tokens[1].quoted());
        assert_eq!(tokens[2].text, "200");
        assert!(!tokens[2].quoted());
    }

    #[test]
    fn an_empty_quoted_string_is_a_token() {
        let tokens = tokenize(r#"a "" b"#).unwrap();
        assert_eq!(tokens.len(), 3);
        assert_eq!(tokens[1].text, "");
        assert!(tokens[1].quoted());
    }

    #[test]
    fn quoted_tokens_may_span_lines_and_advance_the_line_count() {
        let tokens = tokenize("a \"x\ny\" b\nc").unwrap();
        assert_eq!(tokens[1].text, "x\ny");
        assert_eq!(tokens[1].line_breaks, 1);
        assert!(!tokens[1].next_is_on_new_line(&tokens[2]));
        assert!(tokens[2].next_is_on_new_line(&tokens[3]));
        assert_eq!(tokens[3].line, 3);
    }

    #[test]
    fn quotes_in_the_middle_of_a_word_are_literal() {
        assert_eq!(texts(r#"a"b c"#), [r#"a"b"#, "c"]);
    }

    #[test]
    fn backticks_take_everything_literally() {
        let tokens = tokenize("header `a \"b\" \\ } #c` x").unwrap();
        assert_eq!(tokens[1].text, "a \"b\" \\ } #c");
        assert_eq!(tokens[1].quote, Quote::Backtick);
        assert_eq!(tokens[2].text, "x");
    }

    #[test]
    fn escaped_braces_keep_their_backslash() {
        let tokens = tokenize(r"respond \{literal\} \}").unwrap();
        assert_eq!(tokens[1].text, r"\{literal\}");
        assert_eq!(tokens[2].text, r"\}");
        assert_eq!(tokens[2].raw, r"\}");
        assert_eq!(tokens[2].column, 21);
    }

    #[test]
    fn backslash_newline_continues_the_logical_line() {
        let tokens = tokenize("reverse_proxy a \\\n    b\nc").unwrap();
        assert_eq!(
            texts("reverse_proxy a \\\n    b\nc"),
            ["reverse_proxy", "a", "b", "c"]
        );
        assert!(!tokens[1].next_is_on_new_line(&tokens[2]));
        assert_eq!((tokens[2].line, tokens[2].column), (2, 5));
        assert_eq!(tokens[2].logical_line, 1);
        assert!(tokens[2].next_is_on_new_line(&tokens[3]));
        assert_eq!(tokens[3].logical_line, 3);
    }

    #[test]
    fn heredocs_strip_the_closing_markers_indentation() {
        let input = "respond <<HTML\n\t\t<b>hi</b>\n\n\t\t  x }\n\t\tHTML 200\nnext";
        let tokens = tokenize(input).unwrap();
        assert_eq!(tokens[1].text, "<b>hi</b>\n\n  x }");
        assert_eq!(tokens[1].quote, Quote::Heredoc);
        assert_eq!(
            tokens[1].raw,
            "<<HTML\n\t\t<b>hi</b>\n\n\t\t  x }\n\t\tHTML"
        );
        assert_eq!(tokens[2].text, "200");
        assert!(!tokens[1].next_is_on_new_line(&tokens[2]));
        assert!(tokens[2].next_is_on_new_line(&tokens[3]));
        assert_eq!((tokens[3].line, tokens[3].logical_line), (6, 6));
    }

    #[test]
    fn heredoc_ends_at_the_first_occurrence_of_its_marker() {
        let tokens = tokenize("a <<END\nxEND\nEND").unwrap();
        assert_eq!(
            (tokens[1].text.as_str(), tokens[1].raw.as_str()),
            ("", "<<END\nxEND")
        );
        assert_eq!(tokens[2].text, "END");
        let e = tokenize("a <<END\nok\nxEND").unwrap_err();
        assert_eq!((e.kind, e.line), (LexErrorKind::HeredocIndentation, 2));
    }

    #[test]
    fn heredoc_opener_followed_by_space_is_an_ordinary_word() {
        assert_eq!(texts("a <<EOF b\nc"), ["a", "<<EOF", "b", "c"]);
        assert_eq!(texts("a <<EOF"), ["a", "<<EOF"]);
    }

    #[test]
    fn escaping_the_first_angle_bracket_disables_the_heredoc() {
        let tokens = tokenize("a \\<<EOF\nb").unwrap();
        assert_eq!(tokens[1].text, "<<EOF");
        assert_eq!(tokens[1].raw, "\\<<EOF");
        assert_eq!(tokens[1].quote, Quote::None);
        assert_eq!(tokens[2].text, "b");
    }

    #[test]
    fn bad_heredoc_markers_are_errors_with_position() {
        let e = lex_err("x\n  a <<\nb");
        assert_eq!(
            (e.kind, e.line, e.column),
            (LexErrorKind::BadHeredocMarker, 2, 5)
        );
        let e = lex_err("a <<<END\nEND");
        assert_eq!(e.kind, LexErrorKind::BadHeredocMarker);
        assert!(e.message.contains("too many"));
        let e = lex_err("a <<E.ND\nE.ND");
        assert_eq!(
            (e.kind, e.line, e.column),
            (LexErrorKind::BadHeredocMarker, 1, 3)
        );
    }

    #[test]
    fn unterminated_heredoc_is_an_error_at_its_opener() {
        let e = lex_err("a\n  respond <<EOF\nhello\n");
        assert_eq!(
            (e.kind, e.line, e.column),
            (LexErrorKind::UnterminatedHeredoc, 2, 11)
        );
        assert!(
            e.to_string()
                .starts_with("line 2, column 11: unterminated heredoc")
        );
    }

    #[test]
    fn mismatched_heredoc_indentation_is_an_error_on_the_offending_line() {
        let e = lex_err("respond <<EOF\n\t\tok\n\tbad\n\t\tEOF");
        assert_eq!((e.kind, e.line), (LexErrorKind::HeredocIndentation, 3));
    }

    #[test]
    fn caddy_2_6_dialect_has_no_heredocs() {
        let tokens = tokenize_with("respond <<EOF\n}\nEOF", LexOptions::CADDY_2_6).unwrap();
        let t: Vec<_> = tokens.iter().map(|t| t.text.as_str()).collect();
        assert_eq!(t, ["respond", "<<EOF", "}", "EOF"]);
        let escaped = tokenize_with("\\<<x", LexOptions::CADDY_2_6).unwrap();
        assert_eq!(escaped[0].text, "\\<<x");
    }

    #[test]
    fn unterminated_quotes_are_errors_with_position() {
        let e = lex_err("a\nb  \"unclosed\n");
        assert_eq!(
            (e.kind, e.line, e.column),
            (LexErrorKind::UnterminatedQuote, 2, 4)
        );
        let e = lex_err("x `abc");
        assert_eq!(
            (e.kind, e.line, e.column),
            (LexErrorKind::UnterminatedBacktick, 1, 3)
        );
        let e = lex_err("x \"abc\\\"");
        assert_eq!(e.kind, LexErrorKind::UnterminatedQuote);
    }

    #[test]
    fn carriage_returns_and_a_leading_bom_are_ignored() {
        let tokens = tokenize("\u{feff}a\r\nb").unwrap();
        assert_eq!(tokens[0].text, "a");
        assert_eq!((tokens[1].line, tokens[1].column), (2, 1));
        assert!(tokens[0].next_is_on_new_line(&tokens[1]));
    }

    #[test]
    fn blank_lines_before_a_token_are_counted() {
        let tokens = tokenize("a\n\n\n b \\\n c").unwrap();
        assert_eq!(tokens[1].newlines_before, 3);
        assert_eq!(tokens[2].newlines_before, 0);
    }

    #[test]
    fn a_backslash_escaped_quote_at_token_start_opens_a_quote_anyway() {
        // Caddy keeps `escaped` set across the opening quote and re-inserts the backslash.
        let tokens = tokenize("\\\"abc\" d").unwrap();
        assert_eq!(tokens[0].text, "\\abc");
        assert_eq!(tokens[0].raw, "\\\"abc\"");
        assert_eq!(tokens[0].quote, Quote::Double);
    }
}
