//! The fuzz targets' corpora (fuzz/corpus/TARGET/, grown by `cargo fuzz`) and crash
//! reproducers (fuzz/regressions/TARGET/) replayed through the same functions the fuzz
//! targets run (`fulcrum::fuzzing`), on the stable toolchain: each input must pass every
//! property its target checks. A few seconds in all.

use std::path::Path;

type Target = fn(&[u8]);

const TARGETS: [(&str, Target); 8] = [
    ("http1_request", fulcrum::fuzzing::http1_request),
    ("http1_response", fulcrum::fuzzing::http1_response),
    ("chunked", fulcrum::fuzzing::chunked),
    ("proxy_protocol", fulcrum::fuzzing::proxy_protocol),
    ("client_hello", fulcrum::fuzzing::client_hello),
    ("h2_server", fulcrum::fuzzing::h2_server),
    ("config", fulcrum::fuzzing::config),
    ("hpack", fulcrum::fuzzing::hpack),
];

/// Runs `target` on every file under `dir` (if it exists): how many.
fn replay(dir: &Path, target: Target) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut n = 0;
    for entry in entries {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let outcome = std::panic::catch_unwind(|| target(&data));
        assert!(outcome.is_ok(), "{} fails", path.display());
        n += 1;
    }
    n
}

#[test]
fn every_corpus_input_and_reproducer_passes() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    for (name, target) in TARGETS {
        let started = std::time::Instant::now();
        let corpus = replay(&root.join("corpus").join(name), target);
        let fixed = replay(&root.join("regressions").join(name), target);
        assert!(corpus > 0, "no corpus for {name}");
        eprintln!(
            "{name}: {corpus} corpus inputs, {fixed} reproducers, {:?}",
            started.elapsed()
        );
    }
}
