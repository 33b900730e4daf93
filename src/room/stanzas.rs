//! The stanzas the bot sends to rooms on its own: joins, leaves, self-pings, and the form that
//! opens a room its join created.

use super::facts::{MUC, MUC_OWNER, PING};
use crate::stanza::Element;

/// Joins `room` as `nick` from `from`, asking for no history: what was said before the bot came
/// must never be POSTed (and every delayed message is dropped anyway, see `super::message`).
pub fn join(room: &str, nick: &str, from: &str) -> Element {
    Element::new("presence").with_attr("to", &format!("{room}/{nick}")).with_attr("from", from).with_child(no_history())
}

/// Leaves `room`, where the bot is `nick`, from `from`.
pub fn leave(room: &str, nick: &str, from: &str) -> Element {
    Element::new("presence")
        .with_attr("to", &format!("{room}/{nick}"))
        .with_attr("from", from)
        .with_attr("type", "unavailable")
}

/// XEP-0410: a ping to our own occupant JID. Prosody's MUC answers it itself while we are in
/// the room, and refuses it when we are not.
pub fn self_ping(room: &str, nick: &str, from: &str, id: &str) -> Element {
    Element::new("iq")
        .with_attr("type", "get")
        .with_attr("id", id)
        .with_attr("to", &format!("{room}/{nick}"))
        .with_attr("from", from)
        .with_child(Element::new("ping").with_attr("xmlns", PING))
}

/// XEP-0045 §10.1.2, an instant room: a room our join created (status 201) stays locked, with
/// everyone else refused (`item-not-found`), until its owner submits a configuration (Prosody
/// unlocks it by itself only after `muc_room_lock_timeout`, 5 minutes). The bot accepts the
/// service's defaults.
pub fn open_new_room(room: &str, from: &str, id: &str) -> Element {
    Element::new("iq")
        .with_attr("type", "set")
        .with_attr("id", id)
        .with_attr("to", room)
        .with_attr("from", from)
        .with_child(
            Element::new("query")
                .with_attr("xmlns", MUC_OWNER)
                .with_child(Element::new("x").with_attr("xmlns", "jabber:x:data").with_attr("type", "submit")),
        )
}

/// Makes a presence the webhook sends to a room a join Prosody's MUC accepts: a join without
/// `<x xmlns='…/muc'/>` is refused (`item-not-found`, "possibly desynced"). A join that has the
/// element but names no history gets `maxstanzas='0'` too.
pub fn make_join(presence: &mut Element) {
    match presence.child_mut("x", Some(MUC)) {
        None => presence.push_element(no_history()),
        // Any `<history/>` the webhook wrote is its own request, namespace or not.
        Some(x) if x.child_named("history").is_none() => x.push_element(no_history_request()),
        Some(_) => {}
    }
}

/// Whether the presence carries the MUC join element.
pub fn is_join(presence: &Element) -> bool {
    presence.child("x", Some(MUC)).is_some()
}

fn no_history() -> Element {
    Element::new("x").with_attr("xmlns", MUC).with_child(no_history_request())
}

/// `<history maxstanzas='0'/>` with its namespace set on it: the join goes to Prosody as a
/// table, where a child does not inherit its parent's `xmlns` (a parsed one carries it), and
/// Prosody's MUC looks for `get_child("history", muc)`: without it, the room finds no request
/// and sends its default history. Serialized, the `xmlns` equal to the parent's is left out.
fn no_history_request() -> Element {
    Element::new("history").with_attr("xmlns", MUC).with_attr("maxstanzas", "0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_asks_for_no_history() {
        assert_eq!(
            join("dev@conference.localhost", "Help Bot", "bot.localhost").to_xml(),
            "<presence to='dev@conference.localhost/Help Bot' from='bot.localhost'>\
             <x xmlns='http://jabber.org/protocol/muc'><history maxstanzas='0'/></x></presence>"
        );
    }

    /// Prosody reads the history request with `get_child("history", muc)`: a child built in a
    /// table carries its namespace itself (a parsed one does), or the room finds no request and
    /// sends its default history. Every join the bot builds, and every one it completes.
    #[test]
    fn every_history_request_carries_the_muc_namespace() {
        fn history(presence: &Element) -> Option<&Element> {
            presence.child_named("x")?.child_named("history")
        }
        let mut without_x = Element::new("presence").with_attr("to", "dev@conference.localhost/bot");
        make_join(&mut without_x);
        let mut with_x = Element::new("presence").with_child(Element::new("x").with_attr("xmlns", MUC));
        make_join(&mut with_x);
        for join in [join("dev@conference.localhost", "bot", "bot.localhost"), without_x, with_x] {
            let history = history(&join).expect("a history request");
            assert_eq!((history.attr("xmlns"), history.attr("maxstanzas")), (Some(MUC), Some("0")), "{join:?}");
        }
    }

    #[test]
    fn ping_and_instant_room() {
        assert_eq!(
            self_ping("dev@conference.localhost", "bot", "bot.localhost", "p1").to_xml(),
            "<iq type='get' id='p1' to='dev@conference.localhost/bot' from='bot.localhost'>\
             <ping xmlns='urn:xmpp:ping'/></iq>"
        );
        assert_eq!(
            open_new_room("dev@conference.localhost", "bot.localhost", "c1").to_xml(),
            "<iq type='set' id='c1' to='dev@conference.localhost' from='bot.localhost'>\
             <query xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' type='submit'/></query></iq>"
        );
    }

    #[test]
    fn a_webhook_presence_becomes_a_join() {
        let mut bare = Element::new("presence").with_attr("to", "dev@conference.localhost/bot");
        make_join(&mut bare);
        assert!(is_join(&bare));
        assert_eq!(
            bare.to_xml(),
            "<presence to='dev@conference.localhost/bot'>\
             <x xmlns='http://jabber.org/protocol/muc'><history maxstanzas='0'/></x></presence>"
        );
        let mut with_x = Element::new("presence").with_child(Element::new("x").with_attr("xmlns", MUC));
        make_join(&mut with_x);
        assert_eq!(
            with_x.to_xml(),
            "<presence><x xmlns='http://jabber.org/protocol/muc'><history maxstanzas='0'/></x></presence>"
        );
        let own_history = Element::new("presence").with_child(
            Element::new("x").with_attr("xmlns", MUC).with_child(Element::new("history").with_attr("maxchars", "0")),
        );
        let mut kept = own_history.clone();
        make_join(&mut kept);
        assert_eq!(kept, own_history);
    }
}
