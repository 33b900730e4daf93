//! The XML parser for `stanza` replies, and the serializer behind it: no input may panic, and
//! whatever parses must serialize to XML that parses back to the same tree.
#![no_main]

use component_http_native::xml::{parse_stanza, Limits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(tree) = parse_stanza(text, Limits::default()) {
        let again = parse_stanza(&tree.to_xml(), Limits::default()).expect("our own output parses");
        assert_eq!(tree, again, "round trip changed the tree");
    }
});
