//! Bodies are streamed, not buffered: a 1 GiB upload and a 1 GiB download pass through
//! Fulcrum while its memory stays flat.

mod common;

use bytes::Bytes;
use futures_util::StreamExt;

use common::{Backend, Fulcrum, client, config, rt};

const GIB: u64 = 1 << 30;
/// Peak resident memory allowed for the whole process, far below the 1 GiB moved.
const MAX_RSS_KIB: u64 = 64 * 1024;

#[test]
fn one_gib_each_way_with_flat_memory() {
    let b = Backend::start("b1");
    let f = Fulcrum::start(&config("", &[&b], ""));
    let rt = rt();
    let c = client();
    rt.block_on(async {
        // Upload, chunked (no length), generated lazily.
        let chunk = Bytes::from(vec![b'u'; 256 * 1024]);
        let chunks = GIB / chunk.len() as u64;
        let stream = futures_util::stream::iter(0..chunks)
            .map(move |_| Ok::<_, std::io::Error>(chunk.clone()));
        let r = c
            .post(f.url("/count"))
            .body(reqwest::Body::wrap_stream(stream))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.unwrap(), GIB.to_string());

        // Download with a Content-Length.
        let r = c.get(f.url(&format!("/bytes/{GIB}"))).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let mut total = 0u64;
        let mut body = r.bytes_stream();
        while let Some(piece) = body.next().await {
            total += piece.unwrap().len() as u64;
        }
        assert_eq!(total, GIB);
    });
    let rss = f.peak_rss_kib();
    eprintln!("peak RSS after 2 GiB streamed: {rss} KiB");
    assert!(rss < MAX_RSS_KIB, "peak RSS {rss} KiB after moving 2 GiB");
}
