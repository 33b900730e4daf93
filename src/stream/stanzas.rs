//! The stanzas of a streamed answer, built from its addressed reply ("the template": a
//! `<message/>` with `type`, `to` and `from`, checked by [`crate::policy`] once for the whole
//! answer) and an [`Update`]:
//!
//! - the first message: its own id, the text, `<composing/>`;
//! - an intermediate correction (XEP-0308): a new id, the whole text, `<replace
//!   id='first id'/>`, `<no-store/>` (XEP-0334: archives and room history skip the steps and
//!   keep the first message and the final text), `<composing/>`;
//! - the final correction: a new id, the exact text, `<replace/>`, `<active/>`, and no
//!   `no-store`;
//! - an answer that came whole: one plain message with `<active/>`.
//!
//! Chat states (XEP-0085) go only to `chat` and `groupchat` messages, and only when the caller
//! says they are wanted (the sender announced them; in a room, the rules of `crate::conversation`).

use super::draft::{Stage, Update};
use crate::stanza::{Element, Node, CHAT_STATES};

/// The namespaces a streamed answer writes, from their one home.
pub use crate::ns::{HINTS, MESSAGE_CORRECT};

/// The stanza that sends `update`, addressed as `template`, with chat states if `chat_states`.
pub fn build(template: &Element, update: &Update, chat_states: bool) -> Element {
    let mut message = bare(template);
    message.set_attr("id", &update.id);
    message.push_element(Element::new("body").with_text(&update.text));
    if let Some(first) = &update.replaces {
        message.push_element(Element::new("replace").with_attr("id", first).with_attr("xmlns", MESSAGE_CORRECT));
    }
    if update.stage == Stage::Intermediate {
        message.push_element(Element::new("no-store").with_attr("xmlns", HINTS));
    }
    if chat_states && takes_chat_states(&message) {
        let state = match update.stage {
            Stage::First | Stage::Intermediate => "composing",
            Stage::Whole | Stage::Final => "active",
        };
        message.push_element(Element::new(state).with_attr("xmlns", CHAT_STATES));
    }
    message
}

/// A standalone `<active/>` for an answer whose first message was already final
/// ([`super::EndStanza::AlreadyFinal`]); `None` where chat states do not go.
pub fn active(template: &Element, chat_states: bool) -> Option<Element> {
    let mut message = bare(template);
    (chat_states && takes_chat_states(&message)).then(|| {
        message.push_element(Element::new("active").with_attr("xmlns", CHAT_STATES));
        message
    })
}

/// The template without what each stanza sets itself: its id, body and chat state.
fn bare(template: &Element) -> Element {
    let mut message = Element { name: "message".into(), attrs: template.attrs.clone(), children: Vec::new() };
    message.remove_attr("id");
    message.children = template
        .children
        .iter()
        .filter(|child| match child {
            Node::Element(e) => e.name != "body" && e.attr("xmlns") != Some(CHAT_STATES),
            Node::Text(_) => false,
        })
        .cloned()
        .collect();
    message
}

fn takes_chat_states(message: &Element) -> bool {
    matches!(message.attr("type"), Some("chat" | "groupchat"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(message_type: &str) -> Element {
        Element::new("message")
            .with_attr("type", message_type)
            .with_attr("to", "user@localhost/phone")
            .with_attr("from", "echo@bot.localhost")
    }

    fn update(stage: Stage, id: &str, text: &str) -> Update {
        let replaces = matches!(stage, Stage::Intermediate | Stage::Final).then(|| "d1-0".to_owned());
        Update { stage, id: id.into(), replaces, text: text.into() }
    }

    #[test]
    fn the_stanzas_of_a_chat_answer() {
        let chat = template("chat");
        let head = "<message type='chat' to='user@localhost/phone' from='echo@bot.localhost'";
        assert_eq!(
            build(&chat, &update(Stage::First, "d1-0", "Hel"), true).to_xml(),
            format!(
                "{head} id='d1-0'><body>Hel</body><composing xmlns='http://jabber.org/protocol/chatstates'/></message>"
            )
        );
        assert_eq!(
            build(&chat, &update(Stage::Intermediate, "d1-1", "Hello <world>"), true).to_xml(),
            format!(
                "{head} id='d1-1'><body>Hello &lt;world&gt;</body><replace id='d1-0' xmlns='urn:xmpp:message-correct:0'/>\
                 <no-store xmlns='urn:xmpp:hints'/><composing xmlns='http://jabber.org/protocol/chatstates'/></message>"
            )
        );
        assert_eq!(
            build(&chat, &update(Stage::Final, "d1-2", "Hello, world."), true).to_xml(),
            format!(
                "{head} id='d1-2'><body>Hello, world.</body><replace id='d1-0' xmlns='urn:xmpp:message-correct:0'/>\
                 <active xmlns='http://jabber.org/protocol/chatstates'/></message>"
            )
        );
        assert_eq!(
            build(&chat, &update(Stage::Whole, "d1-0", "Hi."), true).to_xml(),
            format!(
                "{head} id='d1-0'><body>Hi.</body><active xmlns='http://jabber.org/protocol/chatstates'/></message>"
            )
        );
        assert_eq!(
            active(&chat, true).unwrap().to_xml(),
            format!("{head}><active xmlns='http://jabber.org/protocol/chatstates'/></message>")
        );
    }

    #[test]
    fn without_chat_states_only_the_text_and_its_hints() {
        let chat = template("chat");
        let head = "<message type='chat' to='user@localhost/phone' from='echo@bot.localhost'";
        assert_eq!(
            build(&chat, &update(Stage::Intermediate, "d1-1", "Hel"), false).to_xml(),
            format!(
                "{head} id='d1-1'><body>Hel</body><replace id='d1-0' xmlns='urn:xmpp:message-correct:0'/>\
                 <no-store xmlns='urn:xmpp:hints'/></message>"
            )
        );
        assert_eq!(active(&chat, false), None);
        // A normal message never gets chat states, even if asked.
        let normal = template("normal");
        assert_eq!(
            build(&normal, &update(Stage::First, "d1-0", "x"), true).to_xml(),
            "<message type='normal' to='user@localhost/phone' from='echo@bot.localhost' id='d1-0'><body>x</body></message>"
        );
        assert_eq!(active(&normal, true), None);
    }

    #[test]
    fn a_room_answer_is_corrected_in_the_room() {
        let room = Element::new("message")
            .with_attr("type", "groupchat")
            .with_attr("to", "room@conference.localhost")
            .with_attr("from", "echo@bot.localhost");
        assert_eq!(
            build(&room, &update(Stage::Final, "d1-5", "Done."), true).to_xml(),
            "<message type='groupchat' to='room@conference.localhost' from='echo@bot.localhost' \
             id='d1-5'><body>Done.</body><replace id='d1-0' xmlns='urn:xmpp:message-correct:0'/>\
             <active xmlns='http://jabber.org/protocol/chatstates'/></message>"
        );
    }

    #[test]
    fn the_templates_own_id_body_and_state_are_replaced() {
        let messy = template("chat")
            .with_attr("id", "webhook-chose")
            .with_child(Element::new("body").with_text("old"))
            .with_child(Element::new("gone").with_attr("xmlns", CHAT_STATES))
            .with_child(Element::new("x").with_attr("xmlns", "urn:example"))
            .with_text("stray");
        assert_eq!(
            build(&messy, &update(Stage::First, "d1-0", "new"), false).to_xml(),
            "<message type='chat' to='user@localhost/phone' from='echo@bot.localhost' id='d1-0'>\
             <x xmlns='urn:example'/><body>new</body></message>"
        );
    }
}
