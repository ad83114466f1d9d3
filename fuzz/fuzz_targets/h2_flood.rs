//! `cargo +nightly fuzz run h2_flood`: see `fulcrum::fuzzing::h2_flood`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| fulcrum::fuzzing::h2_flood(data));
