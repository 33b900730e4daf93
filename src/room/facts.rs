//! The few facts the room logic needs from a presence, a message or a ping answer, read from an
//! owned stanza tree once, so the decisions ([`super::membership`], [`super::message`]) are pure
//! functions of plain values that tests can write by hand.

use crate::jid;
use crate::stanza::{Element, XMLNS_STANZAS};

/// The namespaces the room logic reads, from their one home.
pub use crate::ns::{DELAY, LEGACY_DELAY, MUC, MUC_OWNER, MUC_USER, PING, REPLY, STANZA_ID};

/// A presence from a room (or from any JID: whether it concerns a room is decided later).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PresenceFacts {
    /// The occupant (or room) JID it came from.
    pub from: String,
    /// `None` is available.
    pub presence_type: Option<String>,
    /// The `<status code=…/>` of its `muc#user` payload (110 self-presence, 201 room created,
    /// 301 banned, 303 nick change, 307 kicked, 321/322 removed, 332 shutdown, 333 error kick).
    pub status_codes: Vec<u16>,
    /// For `type='error'`: the defined condition (`conflict`, `forbidden`, …).
    pub error_condition: Option<String>,
}

impl PresenceFacts {
    /// Reads the facts of `presence`.
    pub fn read(presence: &Element) -> PresenceFacts {
        let mut status_codes = Vec::new();
        for x in presence.elements_named("x", Some(MUC_USER)) {
            // Any `<status/>` in the payload: one built without a namespace counts too.
            for status in x.elements().filter(|c| c.name == "status") {
                if let Some(code) = status.attr("code").and_then(|c| c.parse().ok()) {
                    status_codes.push(code);
                }
            }
        }
        PresenceFacts {
            from: presence.attr("from").unwrap_or_default().to_owned(),
            presence_type: presence.attr("type").map(Into::into),
            status_codes,
            error_condition: error_condition(presence),
        }
    }

    /// Whether the `muc#user` payload carries status `code`.
    pub fn has_status(&self, code: u16) -> bool {
        self.status_codes.contains(&code)
    }
}

/// A message, as far as rooms care.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageFacts {
    /// `room@service/nick` for what an occupant said; the bare room JID for what the room says.
    pub from: String,
    /// The JID on the component it was sent to.
    pub to: String,
    /// `None` is `normal`.
    pub message_type: Option<String>,
    /// The text of its `<body/>`, if any.
    pub body: Option<String>,
    /// Whether it carries a `<subject/>` (a subject change).
    pub has_subject: bool,
    /// Carries XEP-0203 (or XEP-0091) delayed delivery: history, not something said now.
    pub delayed: bool,
    /// The message's own `id`.
    pub id: Option<String>,
    /// The XEP-0359 `<stanza-id/>` the room gave it (`by` the room itself; one claimed by
    /// anyone else is not the room's and is ignored).
    pub stanza_id: Option<String>,
    /// The `to` of a XEP-0461 `<reply/>`: whose message this answers (optional in the XEP).
    pub reply_to: Option<String>,
    /// The `id` of a XEP-0461 `<reply/>`: which message it answers (in a room, the room's
    /// stanza id when it gives them, else the message's own id).
    pub reply_id: Option<String>,
    /// The `id` of a XEP-0444 `<reactions/>`: which message it reacts to (in a room, as for
    /// `reply_id`).
    pub reactions_id: Option<String>,
    /// For `type='error'`: the defined condition.
    pub error_condition: Option<String>,
}

impl MessageFacts {
    /// `body` is the one [`crate::stanza::Incoming`] already read (`get_child_text("body")`).
    pub fn read(message: &Element, body: Option<String>) -> MessageFacts {
        let own_ns = message.attr("xmlns");
        let in_own_ns = |c: &&Element| c.attr("xmlns") == own_ns || c.attr("xmlns").is_none();
        let from = message.attr("from").unwrap_or_default();
        let room = jid::bare(from);
        let reply = message.child("reply", Some(REPLY));
        MessageFacts {
            from: from.to_owned(),
            to: message.attr("to").unwrap_or_default().to_owned(),
            message_type: message.attr("type").map(Into::into),
            body,
            has_subject: message.elements().filter(in_own_ns).any(|c| c.name == "subject"),
            delayed: message.child("delay", Some(DELAY)).is_some() || message.child("x", Some(LEGACY_DELAY)).is_some(),
            id: message.attr("id").map(Into::into),
            stanza_id: message
                .elements_named("stanza-id", Some(STANZA_ID))
                .find(|c| c.attr("by") == Some(room))
                .and_then(|c| c.attr("id"))
                .map(Into::into),
            reply_to: reply.and_then(|r| r.attr("to")).map(Into::into),
            reply_id: reply.and_then(|r| r.attr("id")).map(Into::into),
            reactions_id: message
                .child("reactions", Some(crate::rich::REACTIONS))
                .and_then(|c| c.attr("id"))
                .map(Into::into),
            error_condition: error_condition(message),
        }
    }
}

/// What came back for a self-ping (XEP-0410).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PingAnswer {
    /// An iq result: the room delivered the ping.
    Result,
    /// An iq error.
    Error {
        /// Its defined condition.
        condition: String,
        /// The error came from our occupant JID: the room delivered the ping to us and it is our
        /// side that cannot answer it, so we are in the room.
        from_occupant: bool,
    },
    /// No answer within the timeout Lua waited (`module:send_iq`'s), or ours.
    Timeout,
}

impl PingAnswer {
    /// Reads the iq answer to a ping sent to `occupant` (`room@service/nick`).
    pub fn read(iq: &Element, occupant: &str) -> PingAnswer {
        match iq.attr("type") {
            Some("result") => PingAnswer::Result,
            _ => PingAnswer::Error {
                condition: error_condition(iq).unwrap_or_else(|| "undefined-condition".into()),
                from_occupant: iq.attr("from") == Some(occupant),
            },
        }
    }
}

/// The defined condition of a stanza's `<error/>`, as `stanza:get_error()` reads it.
fn error_condition(stanza: &Element) -> Option<String> {
    if stanza.attr("type") != Some("error") {
        return None;
    }
    let error = stanza.child_named("error")?;
    error.elements().find(|c| c.attr("xmlns") == Some(XMLNS_STANZAS) && c.name != "text").map(|c| c.name.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn el(name: &str, xmlns: &str) -> Element {
        Element::new(name).with_attr("xmlns", xmlns)
    }

    #[test]
    fn reads_a_self_presence_and_a_join_error() {
        let presence = Element::new("presence").with_attr("from", "dev@conference.localhost/bot").with_child(
            el("x", MUC_USER)
                .with_child(Element::new("item").with_attr("affiliation", "none").with_attr("role", "participant"))
                .with_child(Element::new("status").with_attr("code", "110"))
                .with_child(Element::new("status").with_attr("code", "201")),
        );
        let facts = PresenceFacts::read(&presence);
        assert_eq!(
            facts,
            PresenceFacts {
                from: "dev@conference.localhost/bot".into(),
                presence_type: None,
                status_codes: vec![110, 201],
                error_condition: None
            }
        );
        let error = Element::new("presence")
            .with_attr("from", "dev@conference.localhost/bot")
            .with_attr("type", "error")
            .with_child(
                Element::new("error")
                    .with_attr("type", "cancel")
                    .with_child(el("conflict", XMLNS_STANZAS))
                    .with_child(el("text", XMLNS_STANZAS).with_text("taken")),
            );
        assert_eq!(PresenceFacts::read(&error).error_condition.as_deref(), Some("conflict"));
    }

    #[test]
    fn reads_a_room_message() {
        let message = Element::new("message")
            .with_attr("from", "dev@conference.localhost/alice")
            .with_attr("to", "bot.localhost")
            .with_attr("type", "groupchat")
            .with_child(Element::new("body").with_text("hi"))
            .with_child(el("delay", DELAY).with_attr("stamp", "2026-11-24T21:00:00Z"))
            .with_child(el("reply", REPLY).with_attr("to", "dev@conference.localhost/bot").with_attr("id", "x1"))
            .with_child(el("stanza-id", STANZA_ID).with_attr("by", "someone@else").with_attr("id", "forged"))
            .with_child(el("stanza-id", STANZA_ID).with_attr("by", "dev@conference.localhost").with_attr("id", "s1"))
            .with_child(el("reactions", crate::rich::REACTIONS).with_attr("id", "s0"))
            .with_attr("id", "m1");
        assert_eq!(
            MessageFacts::read(&message, Some("hi".into())),
            MessageFacts {
                from: "dev@conference.localhost/alice".into(),
                to: "bot.localhost".into(),
                message_type: Some("groupchat".into()),
                body: Some("hi".into()),
                has_subject: false,
                delayed: true,
                id: Some("m1".into()),
                stanza_id: Some("s1".into()),
                reply_to: Some("dev@conference.localhost/bot".into()),
                reply_id: Some("x1".into()),
                reactions_id: Some("s0".into()),
                error_condition: None,
            }
        );
        let subject = Element::new("message").with_attr("type", "groupchat").with_child(Element::new("subject"));
        let facts = MessageFacts::read(&subject, None);
        assert!(facts.has_subject && !facts.delayed);
        let legacy = Element::new("message").with_child(el("x", LEGACY_DELAY));
        assert!(MessageFacts::read(&legacy, None).delayed);
    }

    #[test]
    fn reads_what_prosodys_muc_sends() {
        use crate::xml::{parse_stanza, ParseLimits};
        let read = |xml: &str| PresenceFacts::read(&parse_stanza(xml, ParseLimits::default()).unwrap());
        let banned = read(
            "<presence from='dev@conference.localhost/bot' to='bot.localhost' type='unavailable'>\
             <x xmlns='http://jabber.org/protocol/muc#user'><item affiliation='outcast' role='none'/>\
             <status code='301'/><status code='110'/></x></presence>",
        );
        assert_eq!((banned.presence_type.as_deref(), banned.status_codes), (Some("unavailable"), vec![301, 110]));
        let conflict = read(
            "<presence from='dev@conference.localhost/bot' to='bot.localhost' type='error'>\
             <error type='cancel' by='dev@conference.localhost'>\
             <conflict xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></presence>",
        );
        assert_eq!(conflict.error_condition.as_deref(), Some("conflict"));
        let not_an_error = read(
            "<presence from='a@b/c'><error><conflict xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></presence>",
        );
        assert_eq!(not_an_error.error_condition, None, "only a type='error' stanza has an error");
    }

    #[test]
    fn reads_ping_answers() {
        let occupant = "dev@conference.localhost/bot";
        assert_eq!(PingAnswer::read(&Element::new("iq").with_attr("type", "result"), occupant), PingAnswer::Result);
        let error = |from: &str, condition: &str| {
            Element::new("iq")
                .with_attr("type", "error")
                .with_attr("from", from)
                .with_child(Element::new("error").with_child(el(condition, XMLNS_STANZAS)))
        };
        assert_eq!(
            PingAnswer::read(&error(occupant, "service-unavailable"), occupant),
            PingAnswer::Error { condition: "service-unavailable".into(), from_occupant: true }
        );
        assert_eq!(
            PingAnswer::read(&error("dev@conference.localhost", "not-acceptable"), occupant),
            PingAnswer::Error { condition: "not-acceptable".into(), from_occupant: false }
        );
    }
}
