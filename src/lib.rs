//! Gatehouse: a self-hosted admin portal for a fleet of Caddy servers.
//!
//! The binary in `main.rs` only parses the command line and dispatches to `cli`; everything
//! else lives here so tests can drive the real thing.
//!
//! Visibility: a module the binary, the tests and the benchmarks never reach is `pub(crate)`
//! here, and the items inside it are plain `pub` (the module bounds them). Inside an exported
//! module, whatever only the crate uses is `pub(crate)`. Nothing is public by accident, so
//! the dead-code lint sees every item.

/// The account use cases, for the portal and the command line alike: sign-in, bans, roles,
/// passwords and second factors, and keeping one admin.
pub(crate) mod accounts;
/// The agent beside each Caddy: its config, Caddy admin client and HTTP API.
pub(crate) mod agent;
/// The composition root: the database opened with its key, the shared state, the server.
pub mod app;
/// Static files embedded in the binary, and their cache-busting URLs.
pub(crate) mod assets;
/// Authentication that is not HTTP: password hashing, TOTP, backup codes.
pub mod auth;
/// Work that must not block the async runtime (SQLite, argon2) goes through one helper.
pub mod blocking;
/// Who may put a site at which address: delegated names, user ports, no overlap of owners.
pub mod claims;
/// One module per subcommand, each with `run()`.
pub mod cli;
/// Typed settings: defaults, then the config file, then `GATEHOUSE_*` environment variables.
pub mod config;
/// The SQLite pool, embedded migrations and one file of plain functions per table.
pub mod db;
/// Pure types and rules: no axum, no rusqlite.
pub mod domain;
/// The one application error type and how it becomes an HTTP response.
pub(crate) mod error;
/// Stored vhosts, settings and agents written out: an agent's Caddyfile, or JSON without secrets.
pub mod export;
/// The hub's side of the agents: client, deploy pipeline, reconciler.
pub mod fleet;
/// The accept loop the hub and the agent share: header-read timeout, connection cap, TLS.
pub(crate) mod http_server;
/// The allocator policy: few malloc arenas, and freed memory handed back after large work.
pub mod memory;
/// Prometheus metrics for hub and agent, and who may read them.
pub(crate) mod metrics;
/// Secrets at rest: the key and its file, AES-256-GCM sealing of agent tokens and TOTP secrets.
pub mod secrets;
/// The site use cases (create, update, toggle, delete, revert, preview, import) for every
/// front end, each checking ownership and policy and deploying; one flat error.
pub mod sites;
/// Logging set-up (tracing).
pub(crate) mod telemetry;
/// The tenant policy in force and the judgement of a `user`'s site by a real Caddy.
pub(crate) mod tenancy;
/// Maud views: the layout, components and one file per area.
pub(crate) mod views;
/// The HTTP side: `router(state)`, extractors and thin handlers.
pub mod web;
/// The JSON the agent answers the hub with, shared by both sides.
pub(crate) mod wire;
