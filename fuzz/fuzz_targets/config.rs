//! `cargo +nightly fuzz run config`: see `fulcrum::fuzzing::config`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| fulcrum::fuzzing::config(data));
