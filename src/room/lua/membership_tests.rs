//! How the rooms read what Prosody hands them for the membership.

use super::*;

/// A Prosody-shaped stanza table (`name`, `attr`, `tags`), built in Lua.
fn table(lua: &Lua, source: &str) -> Table {
    lua.load(source).eval().unwrap()
}

fn depth(element: &Element) -> usize {
    1 + element
        .children
        .iter()
        .filter_map(|c| match c {
            crate::stanza::Node::Element(e) => Some(depth(e)),
            _ => None,
        })
        .max()
        .unwrap_or(0)
}

/// Whatever a presence carries below the membership's levels (nested far beyond the parse
/// limits, or values that are not strings where Prosody puts strings), it is read without an
/// error and without looking further down, and the facts at the top are all there.
#[test]
fn a_presence_is_read_only_as_deep_as_the_membership_looks() {
    let lua = Lua::new();
    let presence = table(
        &lua,
        r#"
        local function el(name, attr, tags) return { name = name, attr = attr, tags = tags or {} } end
        local deep = el("n", { xmlns = "urn:example:deep" });
        local top = deep;
        for _ = 1, 10000 do top = el("n", { xmlns = "urn:example:deep" }, { top }) end
        local x = el("x", { xmlns = "http://jabber.org/protocol/muc#user" }, {
            el("status", { code = "110" }), el("status", { code = "201" }), top,
        });
        local odd = el("odd", { [1] = "not a key", weird = {} }, { "text", 7 });
        return el("presence", { from = "dev@conference.localhost/bot", to = "bot.localhost" }, { top, odd, x })
        "#,
    );
    let element = stanza_top(&presence, MEMBERSHIP_DEPTH);
    assert_eq!(depth(&element), MEMBERSHIP_DEPTH);
    let facts = PresenceFacts::read(&element);
    assert_eq!((facts.from.as_str(), facts.status_codes), ("dev@conference.localhost/bot", vec![110, 201]));
    // Not a stanza at all: an empty element, not an error.
    assert_eq!(stanza_top(&table(&lua, "return { name = 1, attr = 'x', tags = 'y' }"), 3), Element::new(""));
}

#[test]
fn a_ping_answer_is_read_from_the_top() {
    let lua = Lua::new();
    let answer = table(
        &lua,
        r#"
        local function el(name, attr, tags) return { name = name, attr = attr, tags = tags or {} } end
        local deep = el("n", {});
        for _ = 1, 100 do deep = el("n", {}, { deep }) end
        return el("iq", { type = "error", from = "dev@conference.localhost" }, {
            deep,
            el("error", { type = "cancel" }, {
                el("not-acceptable", { xmlns = "urn:ietf:params:xml:ns:xmpp-stanzas" }, { deep }),
            }),
        })
        "#,
    );
    let read = PingAnswer::read(&stanza_top(&answer, MEMBERSHIP_DEPTH), "dev@conference.localhost/bot");
    assert_eq!(read, PingAnswer::Error { condition: "not-acceptable".into(), from_occupant: false });
}
