//! The parts of Gatehouse the fuzz targets drive, compiled from the very source files in
//! `src/domain/`. Those modules are pure by design (std, plus idna and serde for two of them),
//! so including them here keeps a fuzz build to a handful of crates instead of rebuilding the
//! whole web stack with sanitizers. `crate::domain::…` inside them resolves to this module,
//! which has the same shape as the real one for the parts that are included.

pub mod domain;

pub mod property;
