//! Virtual hosts: a site's address, its reverse-proxy upstreams and the templates that turn a
//! short form into a site-block body. Pure rules only, so each can be tested on its own; the
//! web layer stores the results and renders them with `domain::caddyfile`.

mod address;
mod attribution;
mod names;
mod template;
mod upstream;

pub use address::SiteAddress;
pub use attribution::Attribution;
pub use names::{Grant, overlap_needle, overlaps, port_allowed};
pub use template::{FieldKind, FieldSpec, GenerateContext, Template};
pub use upstream::{MAX_UPSTREAMS, Upstream, Upstreams};
