//! `cargo +nightly fuzz run client_hello`: see `fulcrum::fuzzing::client_hello`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| fulcrum::fuzzing::client_hello(data));
