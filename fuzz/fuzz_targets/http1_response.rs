//! `cargo +nightly fuzz run http1_response`: see `fulcrum::fuzzing::http1_response`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| fulcrum::fuzzing::http1_response(data));
