//! Any bytes a client sends: the request parser never panics, agrees with itself on every
//! prefix, and a request it accepts is re-rendered for the upstream as a head that parses
//! again with the same framing (the re-rendering cannot open a smuggling gap).
#![no_main]

use engine_http::header_slots;
use engine_http::request::{parse, MAX_REQUEST_HEADERS};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut slots = header_slots();
    let Ok(Some(head)) = parse(data, &mut slots) else { return };
    assert!(head.len <= data.len());
    // The proxy adds up to five fields (Host, X-Forwarded-For, Via, framing, Connection); past
    // that our own header-count limit, not a framing difference, would refuse the re-parse.
    if head.headers.len() + 6 > MAX_REQUEST_HEADERS {
        return;
    }
    // A shorter prefix is never a complete request.
    for cut in [head.len - 1, head.len / 2] {
        let mut s = header_slots();
        assert!(!matches!(parse(&data[..cut], &mut s), Ok(Some(_))));
    }
    let mut out = Vec::new();
    engine_http::forward::upstream_request(&head, b"127.0.0.1", "127.0.0.1:1", head.upgrade, true, &mut out);
    let mut again = header_slots();
    let twice = parse(&out, &mut again).expect("the rendered head parses").expect("and is complete");
    assert_eq!(twice.len, out.len());
    assert_eq!(twice.framing, head.framing);
    assert_eq!((twice.method, twice.target), (head.method, head.target));
});
