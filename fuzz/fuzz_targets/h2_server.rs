//! `cargo +nightly fuzz run h2_server`: see `fulcrum::fuzzing::h2_server`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| fulcrum::fuzzing::h2_server(data));
