//! The six site templates: what each asks for, and how its answers become a site-block body.
//!
//! Every body built here is already in the normal form that `CaddyfileBody` produces (tab
//! indentation, single spaces, one directive per line, ending in a newline), so that what the
//! person previews is byte for byte what is stored and rendered. User text only ever reaches
//! the body as a single token: either it was parsed into a type whose canonical form is plain
//! ASCII, or it goes through `encode_arg`.

mod catalog;
mod generate;
mod values;

pub use catalog::{FieldKind, FieldSpec, Template};
pub use generate::GenerateContext;

#[cfg(test)]
mod tests;
