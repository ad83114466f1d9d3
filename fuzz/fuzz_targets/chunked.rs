//! `cargo +nightly fuzz run chunked`: see `fulcrum::fuzzing::chunked`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| fulcrum::fuzzing::chunked(data));
