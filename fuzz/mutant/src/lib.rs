//! strata-core, compiled from a copy of `core/src` with two ordering rules broken
//! (the mutations are in `build.rs`). Used only by the `*_mutant` fuzz targets.
#![allow(warnings, clippy::all)]

include!(concat!(env!("OUT_DIR"), "/mutant_lib.rs"));
