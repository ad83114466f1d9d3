//! `cargo +nightly fuzz run hpack`: see `fulcrum::fuzzing::hpack`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| fulcrum::fuzzing::hpack(data));
