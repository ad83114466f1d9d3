use super::*;

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn fields(d: &mut Decoder, block: &str) -> Result<Vec<(String, String)>, CompressionError> {
    let mut out = Vec::new();
    d.decode(&hex(block), |f| {
        out.push((
            String::from_utf8(f.name.to_vec()).unwrap(),
            String::from_utf8(f.value.to_vec()).unwrap(),
        ))
    })?;
    Ok(out)
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

const GET_HTTP: [(&str, &str); 3] = [(":method", "GET"), (":scheme", "http"), (":path", "/")];

/// RFC 7541 C.3 (plain literals) and C.4 (the same requests, Huffman-coded): three
/// requests on one connection, the table carried over.
#[test]
fn rfc_request_examples() {
    for blocks in [
        [
            "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
            "8286 84be 5808 6e6f 2d63 6163 6865",
            "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
        ],
        [
            "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
            "8286 84be 5886 a8eb 1064 9cbf",
            "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
        ],
    ] {
        let mut d = Decoder::new(4096);
        let mut first = GET_HTTP.to_vec();
        first.push((":authority", "www.example.com"));
        assert_eq!(fields(&mut d, blocks[0]).unwrap(), pairs(&first));
        assert_eq!(d.table_size(), 57);
        let mut second = first.clone();
        second.push(("cache-control", "no-cache"));
        assert_eq!(fields(&mut d, blocks[1]).unwrap(), pairs(&second));
        assert_eq!(d.table_size(), 110);
        let third = [
            (":method", "GET"),
            (":scheme", "https"),
            (":path", "/index.html"),
            (":authority", "www.example.com"),
            ("custom-key", "custom-value"),
        ];
        assert_eq!(fields(&mut d, blocks[2]).unwrap(), pairs(&third));
        assert_eq!(d.table_size(), 164);
    }
}

/// RFC 7541 C.5: responses with a 256-byte table, the oldest entries evicted.
#[test]
fn rfc_response_examples_evict() {
    let mut d = Decoder::new(256);
    let first = fields(
        &mut d,
        "4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133
         2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70
         6c65 2e63 6f6d",
    )
    .unwrap();
    let date = ("date", "Mon, 21 Oct 2013 20:13:21 GMT");
    let location = ("location", "https://www.example.com");
    assert_eq!(
        first,
        pairs(&[
            (":status", "302"),
            ("cache-control", "private"),
            date,
            location
        ])
    );
    assert_eq!(d.table_size(), 222);
    let second = fields(&mut d, "4803 3330 37c1 c0bf").unwrap();
    assert_eq!(
        second,
        pairs(&[
            (":status", "307"),
            ("cache-control", "private"),
            date,
            location
        ])
    );
    assert_eq!(d.table_size(), 222);
}

#[test]
fn static_names_are_marked() {
    let mut d = Decoder::new(4096);
    let mut seen = Vec::new();
    // :method GET (indexed 2), user-agent "x" (literal, static name 58), "a: b".
    d.decode(&hex("82 0f2b 0178 0001 6101 62"), |f| {
        seen.push(f.static_name)
    })
    .unwrap();
    assert_eq!(seen, [Some(2), Some(58), None]);
}

#[test]
fn broken_blocks_are_compression_errors() {
    for (block, why) in [
        ("80", "index 0"),
        ("be", "index past the tables"),
        ("82 3f e1 1f", "table size update after a field"),
        ("3f e2 1f", "table size update over the limit"),
        ("0004 6162", "string past the block"),
        ("00", "string missing"),
        ("ff ff ff ff ff", "integer too large"),
        ("ff 80", "integer cut short"),
        ("0081 ff 00", "bad Huffman name"),
    ] {
        let mut d = Decoder::new(4096);
        assert_eq!(
            d.decode(&hex(block), |_| {}),
            Err(CompressionError(why)),
            "{block}"
        );
    }
}

#[test]
fn a_size_update_first_is_fine_and_evicts() {
    let mut d = Decoder::new(4096);
    fields(&mut d, "4001 6101 62").unwrap(); // "a: b", indexed
    assert_eq!(d.table_size(), 34);
    // Size 0, then the entry is gone.
    assert_eq!(
        fields(&mut d, "20 82").unwrap(),
        pairs(&[(":method", "GET")])
    );
    assert_eq!(d.table_size(), 0);
    assert_eq!(
        d.decode(&hex("be"), |_| {}),
        Err(CompressionError("index past the tables"))
    );
}

#[test]
fn a_dynamic_name_reused_while_evicted() {
    // Table of 40 bytes: "a: b" (34) is entry 62; a literal with incremental indexing
    // naming 62 evicts it while its name is in use.
    let mut d = Decoder::new(40);
    fields(&mut d, "4001 6101 62").unwrap();
    assert_eq!(fields(&mut d, "7e01 63").unwrap(), pairs(&[("a", "c")]));
    assert_eq!(fields(&mut d, "be").unwrap(), pairs(&[("a", "c")]));
}
