//! `cargo +nightly fuzz run proxy_protocol`: see `fulcrum::fuzzing::proxy_protocol`.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| fulcrum::fuzzing::proxy_protocol(data));
