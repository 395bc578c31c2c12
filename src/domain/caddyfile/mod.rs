//! Caddyfile handling for Gatehouse: a tokenizer that mirrors Caddy's own lexer, a validator
//! for untrusted site-block bodies, and a deterministic renderer for whole Caddyfiles.
//!
//! Self-contained (std only) so it can live anywhere in the crate tree; modules refer to each
//! other through `super::` only.

pub mod body;
pub mod lexer;
pub mod render;

pub use body::{BodyError, BodyErrorKind, BodyPolicy, CaddyfileBody, DEFAULT_USER_DIRECTIVES};
pub use lexer::{
    LexError, LexErrorKind, LexOptions, Quote, Token, TokenKind, tokenize, tokenize_with,
};
pub use render::{
    AccessLog, GlobalOptions, SiteBlock, config_hash, encode_arg, render, render_site,
};
