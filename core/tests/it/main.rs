//! Integration tests of core's shared formats: ids, LSNs, keys, generations, layer
//! names, remote keys, `IndexPart`, timeline metadata, `LocationConf` and the
//! deletion-queue files.
//!
//! Per format: an insta snapshot of a representative value (a format change is a
//! visible diff under `snapshots/`), proptest round-trips of every parse/format
//! pair, malformed-input tests that assert the typed [`ParseError`] variant, and a
//! check that no parser panics on arbitrary input.
//!
//! [`ParseError`]: strata_core::ParseError

mod deletion_list;
mod ids;
mod index_part;
mod layer_name;
mod location_conf;
mod metadata;
mod no_panic;
mod remote_path;
mod support;
