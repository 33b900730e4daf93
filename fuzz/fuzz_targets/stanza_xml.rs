//! The XML parser for `stanza` replies and pushes, and the serializer behind it: no input may
//! panic; whatever parses must serialize to XML that parses back to the same tree, and that an
//! independent namespace-aware parser (roxmltree, as strict as expat on namespaces) accepts:
//! a stanza that is ill-formed on the wire disconnects the user who receives it.
#![no_main]

use component_http_native::xml::{parse_stanza, ParseLimits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(tree) = parse_stanza(text, ParseLimits::default()) {
        let written = tree.to_xml();
        let again = parse_stanza(&written, ParseLimits::default()).expect("our own output parses");
        assert_eq!(tree, again, "round trip changed the tree");
        if let Err(e) = roxmltree::Document::parse(&written) {
            panic!("{text:?} was written as {written:?}, which a namespace-aware parser refuses: {e}");
        }
    }
});
