//! `cargo +nightly fuzz run http1_request`: see `fulcrum::fuzzing::http1_request`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| fulcrum::fuzzing::http1_request(data));
