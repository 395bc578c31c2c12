//! Caddyfile handling for Gatehouse: a tokenizer that mirrors Caddy's own lexer, a validator
//! for untrusted site-block bodies, a deterministic renderer for whole Caddyfiles, and the
//! reader of whole files to import.
//!
//! Self-contained (std only, plus serde's derive for the import reader's report) so it can
//! live anywhere in the crate tree; modules refer to each other through `super::` only.

pub mod body;
pub mod import;
pub mod lexer;
pub mod render;

pub use body::{BodyError, BodyErrorKind, BodyPolicy, CaddyfileBody, DEFAULT_USER_DIRECTIVES};
pub use lexer::{
    LexError, LexErrorKind, LexOptions, Quote, Token, TokenKind, tokenize, tokenize_with,
};
pub use render::{
    AccessLog, GlobalOptions, SiteBlock, config_hash, encode_arg, render, render_site,
};
