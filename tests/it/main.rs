//! Every integration test in one binary: one module per area, all on the shared support in
//! `tests/common` (a real hub on port 0 with its own SQLite file, real Caddy, the real agent
//! binary, loopback only). One binary links the crate and the support code once.
//!
//! Run one area with a module path as the filter: `cargo test --test it vhosts::`.

#[path = "../common/mod.rs"]
mod common;

mod account_rules;
mod accounts;
mod agent;
mod api;
mod blocking;
mod caddy_render;
mod cli;
mod crash;
mod drift;
mod faults;
mod fleet;
mod hardening;
mod history;
mod import;
mod load;
mod logs;
mod logs_agent;
mod metrics;
mod plan;
mod quarantine;
mod rollout;
mod secrets;
mod tenancy;
mod tenancy_property;
mod tls;
mod vendor;
mod vhosts;
mod web;
