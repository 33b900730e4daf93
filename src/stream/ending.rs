//! How a streamed answer ends for its sender, as the one [`Completion`] the dispatcher pushes
//! last: the final stanza and, when the stream was cut short, the log line saying why; or, when
//! there was no text at all, the outcome a non-streamed answer would have had.

use super::draft::{EndStanza, StreamEnd};
use super::stanzas;
use crate::outcome::{complete, describe, Completion, Level, Outcome};
use crate::stanza::{Element, Incoming};

/// The last completion of the stream that answers `orig`, addressed as `template` (see
/// [`stanzas`]), once [`super::Draft::end_stanza`] said how it ends.
pub fn end_completion(
    orig: &Incoming,
    template: &Element,
    finish: EndStanza,
    ending: &StreamEnd,
    chat_states: bool,
) -> Completion {
    let log = match ending {
        StreamEnd::Cut(cut) => Some((Level::Warn, format!("{}: streamed answer cut off: {}", describe(orig), cut.why))),
        StreamEnd::Complete => None,
    };
    match finish {
        EndStanza::Send(update) => Completion { send: Some(stanzas::build(template, &update, chat_states)), log },
        EndStanza::AlreadyFinal => Completion { send: stanzas::active(template, chat_states), log },
        EndStanza::NoText => match ending {
            // Like a `200` with an empty body: accepted, nothing to say.
            StreamEnd::Complete => complete(orig, Outcome::NoReply),
            StreamEnd::Cut(cut) => complete(orig, cut.outcome()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::draft::{Cut, Stage, Update};

    fn template() -> Element {
        Element::new("message")
            .with_attr("type", "chat")
            .with_attr("to", "user@localhost/phone")
            .with_attr("from", "echo@bot.localhost")
    }

    #[test]
    fn a_stream_ends_in_one_completion() {
        let orig = Incoming::sample("message", Some("chat"));
        let cut = StreamEnd::Cut(Cut::broken("connection reset"));
        let update = Update { stage: Stage::Final, id: "d1-3".into(), replaces: Some("d1-0".into()), text: "x".into() };
        let done = end_completion(&orig, &template(), EndStanza::Send(update), &cut, true);
        assert!(done.send.unwrap().to_xml().contains("<replace id='d1-0'"));
        assert_eq!(
            done.log,
            Some((
                Level::Warn,
                "message from user@localhost/phone to echo@bot.localhost (id abc): streamed answer cut off: the \
                 connection broke: connection reset"
                    .into()
            ))
        );
        let done = end_completion(&orig, &template(), EndStanza::AlreadyFinal, &StreamEnd::Complete, true);
        assert_eq!(
            done,
            Completion {
                send: Some(
                    template()
                        .with_child(Element::new("active").with_attr("xmlns", "http://jabber.org/protocol/chatstates"))
                ),
                log: None
            }
        );
        assert_eq!(
            end_completion(&orig, &template(), EndStanza::AlreadyFinal, &StreamEnd::Complete, false),
            Completion { send: None, log: None }
        );
        // No text: as a non-streamed answer would end.
        assert_eq!(
            end_completion(&orig, &template(), EndStanza::NoText, &StreamEnd::Complete, true),
            Completion { send: None, log: None }
        );
        let failed = end_completion(&orig, &template(), EndStanza::NoText, &cut, true);
        assert_eq!(
            failed.send.unwrap().to_xml(),
            "<message to='user@localhost/phone' from='echo@bot.localhost' id='abc' type='error'><error type='cancel'>\
             <remote-server-timeout xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>\
             <text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>Connection failure</text></error></message>"
        );
        assert!(failed.log.unwrap().1.ends_with("streamed answer cut off: the connection broke: connection reset"));
    }
}
