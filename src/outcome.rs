//! What the sender of a stanza gets: the one outcome of each stanza (a reply, nothing, or an
//! error), the table of stanza errors, and the rules about what may be answered.
//!
//! Runs on the worker threads, on owned data; the main thread only turns the finished
//! [`Completion`] into a Lua stanza table and sends it. What the webhook's HTTP answer means is
//! read in [`crate::answer`]; what a reply may say is checked in [`crate::policy`].

use crate::conversation::RoomReply;
use crate::stanza::{error_reply, Element, Incoming, CHAT_STATES, RECEIPTS};

/// An XMPP stanza error: type, defined condition, optional human-readable text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StanzaError {
    /// `cancel`, `wait`, `modify`, `auth`.
    pub error_type: &'static str,
    /// The defined condition (`remote-server-timeout`, …), in `urn:ietf:params:xml:ns:xmpp-stanzas`.
    pub condition: &'static str,
    /// Human-readable text, if any.
    pub text: Option<&'static str>,
}

const fn err(error_type: &'static str, condition: &'static str, text: Option<&'static str>) -> StanzaError {
    StanzaError { error_type, condition, text }
}

/// The webhook stayed unreachable for the whole retry window.
pub const CONNECTION_FAILURE: StanzaError = err("cancel", "remote-server-timeout", Some("Connection failure"));
/// The deadline (`*_timeout`) passed first.
pub const TIMED_OUT: StanzaError = err("wait", "remote-server-timeout", Some("The webhook did not answer in time"));
/// The webhook answered with a reply the module may not send.
pub const BAD_REPLY: StanzaError = err("cancel", "internal-server-error", Some("The webhook sent an invalid reply"));
/// The queue was full when the stanza arrived.
pub const QUEUE_FULL: StanzaError =
    err("wait", "resource-constraint", Some("Too many stanzas are waiting for the webhook"));
/// The module was unloaded (or its reload failed) before the webhook answered.
pub const UNLOADED: StanzaError =
    err("wait", "service-unavailable", Some("The component was stopped before the webhook answered"));
/// A bug of ours: logged as such.
pub const INTERNAL: StanzaError = err("cancel", "internal-server-error", None);

/// The stanza error a non-2xx HTTP status maps to.
pub fn status_error(status: u16) -> StanzaError {
    match status {
        400 => err("modify", "bad-request", None),
        401 => err("auth", "not-authorized", None),
        402 => err("auth", "forbidden", Some("Payment required")),
        403 => err("auth", "forbidden", None),
        404 => err("cancel", "item-not-found", None),
        410 => err("cancel", "gone", None),
        500 => err("cancel", "internal-server-error", None),
        501 => err("cancel", "feature-not-implemented", None),
        502 => err("cancel", "remote-server-timeout", Some("Bad gateway")),
        503 => err("wait", "remote-server-timeout", Some("Service temporarily unavailable")),
        504 => err("wait", "remote-server-timeout", Some("Gateway timeout")),
        _ => err("cancel", "service-unavailable", None),
    }
}

/// A log line for Prosody's log, at one of its levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Details for debugging (`log_level = "debug"`).
    Debug,
    /// Normal operation worth noting.
    Info,
    /// Something a sender noticed, or an operator should.
    Warn,
    /// Something is broken.
    Error,
}

impl Level {
    /// The level's name in Prosody's `module:log`.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

/// What a reply (or a push) sends: one stanza, and the messages that go right after it (see
/// [`crate::rich::compose`]: a file's caption, what else a reaction said).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The stanza.
    pub stanza: Element,
    /// Messages sent right after it, in order, addressed as it is.
    pub after: Vec<Element>,
}

impl From<Element> for Reply {
    fn from(stanza: Element) -> Reply {
        Reply { stanza, after: Vec::new() }
    }
}

/// What the webhook said about one stanza, before the rules about what may be answered.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The webhook's reply, addressed and checked: sent as it is.
    Reply(Reply),
    /// The webhook accepted the stanza and has nothing to say.
    NoReply,
    /// `reason` is for the operator's log: what went wrong and where.
    Error(StanzaError, String),
}

/// The finished result for one stanza: at most one stanza to send, at most one log line.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// The stanza to send, if any.
    pub send: Option<Element>,
    /// The line to log, if any.
    pub log: Option<(Level, String)>,
}

/// Applies the rules about what may be sent back, and phrases the log line.
///
/// - A stanza of type `error` is never answered (that is how error loops start).
/// - An iq `get`/`set` gets exactly one answer carrying its `id`: the webhook's reply made an
///   iq `result` (or `error`, if the webhook says so), an empty result when the webhook had
///   nothing to say, or the error.
/// - An iq `result`/`error`, and an iq without an id, is never answered.
pub fn complete(orig: &Incoming, outcome: Outcome) -> Completion {
    let is_request = answers_request(orig);
    let answerable = answerable(orig);
    let what = describe(orig);
    match outcome {
        Outcome::Reply(_) if !answerable => Completion {
            send: None,
            log: Some((Level::Debug, format!("not answering {what}: the webhook's reply is dropped"))),
        },
        Outcome::Reply(reply) if is_request => Completion { send: Some(iq_response(orig, reply.stanza)), log: None },
        Outcome::Reply(reply) => Completion { send: Some(reply.stanza), log: None },
        Outcome::NoReply if is_request => Completion { send: Some(iq_response(orig, Element::new("iq"))), log: None },
        Outcome::NoReply => Completion { send: None, log: None },
        // Never into a room, nor to an occupant (see `crate::conversation`): logged only.
        Outcome::Error(_, reason) if orig.room.is_some() => Completion {
            send: None,
            log: Some((
                Level::Warn,
                format!("{what}: {reason} (not answered: errors never go to a room or its occupants)"),
            )),
        },
        Outcome::Error(error, reason) => Completion {
            send: answerable.then(|| error_reply(orig, error.error_type, error.condition, error.text)),
            log: Some((Level::Warn, format!("{what}: {reason}"))),
        },
    }
}

/// Whether anything may be sent back for `orig`: never for an error, nor for an iq that is
/// not a request.
fn answerable(orig: &Incoming) -> bool {
    orig.stanza_type.as_deref() != Some("error") && (orig.name != "iq" || answers_request(orig))
}

/// The messages a reply sends after its stanza (see [`Reply`]), taken out of `outcome` to be
/// sent right after what [`complete`] makes of it; none when the reply is not sent, or answers
/// an iq (whose answer is one iq).
pub fn take_after(orig: &Incoming, outcome: &mut Outcome) -> Vec<Element> {
    match outcome {
        Outcome::Reply(reply) if answerable(orig) && !answers_request(orig) => std::mem::take(&mut reply.after),
        _ => Vec::new(),
    }
}

/// Whether `orig` is an iq request, answered with exactly one iq response. An iq without an id
/// cannot be answered (its sender could not match the answer; RFC 6120 8.2.3): Prosody refuses
/// such iqs from clients itself, but they can still come from a component or a remote server.
pub fn answers_request(orig: &Incoming) -> bool {
    orig.name == "iq" && matches!(orig.stanza_type.as_deref(), Some("get" | "set")) && orig.id.is_some()
}

/// The response to an iq get/set: always an iq with the request's id, from the JID asked to
/// the one who asked; the webhook's iq keeps its payload and may choose `type="error"`.
pub fn iq_response(orig: &Incoming, reply: Element) -> Element {
    let mut response = if reply.name == "iq" { reply } else { Element::new("iq") };
    let response_type = if response.attr("type") == Some("error") { "error" } else { "result" };
    response.set_attr("type", response_type);
    match &orig.id {
        Some(id) => response.set_attr("id", id),
        None => response.remove_attr("id"),
    }
    answer_sender(&mut response, orig);
    response
}

/// Addresses a stanza from the JID the original was sent to, to its sender, whatever it said
/// before: the answer to an iq and a chat state belong to the one who asked.
pub fn answer_sender(stanza: &mut Element, orig: &Incoming) {
    for (key, value) in [("to", &orig.from), ("from", &orig.to)] {
        match value {
            Some(value) => stanza.set_attr(key, value),
            None => stanza.remove_attr(key),
        }
    }
}

/// A standalone XEP-0085 chat state notification (`composing`, `active`) from the JID the
/// message was sent to, to its sender.
pub fn chat_state(orig: &Incoming, state: &str) -> Element {
    let mut message = Element::new("message");
    match room_conversation(orig) {
        // In a room, to the room: every occupant sees it.
        Some(defaults) => {
            message.set_attr("to", &defaults.to);
            message.set_attr("from", &defaults.from);
            message.set_attr("type", defaults.reply_type);
        }
        None => {
            answer_sender(&mut message, orig);
            message.set_attr("type", "chat");
        }
    }
    message.push_element(chat_state_element(state));
    message
}

/// The XEP-0184 receipt `orig` is owed once the webhook has accepted it (a reply or nothing to
/// say, from any 2xx answer): `<received id='…'/>` from the JID the message was sent to, to its
/// sender, under `id` (a new one, unique to this stanza). None when it asked for none (see
/// [`Incoming::receipt_request`]) or the outcome is an error.
pub fn receipt(orig: &Incoming, outcome: &Outcome, id: &str) -> Option<Element> {
    let accepted = matches!(outcome, Outcome::Reply(_) | Outcome::NoReply);
    let acked = orig.id.as_deref().filter(|_| accepted && orig.receipt_request && orig.name == "message")?;
    let mut message = Element::new("message").with_attr("id", id);
    answer_sender(&mut message, orig);
    Some(message.with_child(Element::new("received").with_attr("xmlns", RECEIPTS).with_attr("id", acked)))
}

/// For a message said in a room: the defaults of the answer (to the room, from the bot's
/// occupant). `None` for anything else, a private message from an occupant included.
fn room_conversation(orig: &Incoming) -> Option<RoomReply> {
    orig.room
        .as_ref()
        .filter(|room| !room.fields.is_private())
        .map(|room| room.reply(orig.from.as_deref().unwrap_or_default(), orig.to.as_deref().unwrap_or_default()))
}

fn chat_state_element(state: &str) -> Element {
    let mut element = Element::new(state);
    element.set_attr("xmlns", CHAT_STATES);
    element
}

/// Adds `<active/>` to a reply to `orig`'s sender that carries no chat state of its own; false
/// if the completion sends no such reply (then a standalone one may be due). A reply to anyone
/// else gets nothing: the chat state is about the conversation with the sender.
pub fn mark_active(completion: &mut Completion, orig: &Incoming) -> bool {
    let Some(reply) = &mut completion.send else { return false };
    let partner = match room_conversation(orig) {
        Some(defaults) => Some(defaults.to),
        None => orig.from.clone(),
    };
    let to_sender = reply.attr("to").is_some() && reply.attr("to") == partner.as_deref();
    if reply.name != "message" || reply.attr("type") == Some("error") || !to_sender {
        return false;
    }
    let has_state = reply.elements().any(|e| e.attr("xmlns") == Some(CHAT_STATES));
    if !has_state {
        reply.push_element(chat_state_element("active"));
    }
    true
}

/// "message from a@b/c to bot.example (id x)", for log lines.
pub fn describe(orig: &Incoming) -> String {
    format!(
        "{} from {} to {} (id {})",
        orig.name,
        orig.from.as_deref().unwrap_or("?"),
        orig.to.as_deref().unwrap_or("?"),
        orig.id.as_deref().unwrap_or("none")
    )
}

/// A log line as Prosody's log should get it: text that came from a webhook, a push or a sender
/// (entity names, reasons, ids) may hold line breaks and other control characters, which would
/// let it forge log lines; they are written as escapes (`\n`, `\u{1b}`).
pub fn loggable(line: &str) -> std::borrow::Cow<'_, str> {
    if !line.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(line);
    }
    std::borrow::Cow::Owned(
        line.chars().map(|c| if c.is_control() { c.escape_debug().to_string() } else { c.to_string() }).collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_map_to_stanza_errors() {
        let table = [
            (400, "modify", "bad-request", None),
            (401, "auth", "not-authorized", None),
            (402, "auth", "forbidden", Some("Payment required")),
            (403, "auth", "forbidden", None),
            (404, "cancel", "item-not-found", None),
            (410, "cancel", "gone", None),
            (500, "cancel", "internal-server-error", None),
            (501, "cancel", "feature-not-implemented", None),
            (502, "cancel", "remote-server-timeout", Some("Bad gateway")),
            (503, "wait", "remote-server-timeout", Some("Service temporarily unavailable")),
            (504, "wait", "remote-server-timeout", Some("Gateway timeout")),
            (418, "cancel", "service-unavailable", None),
            (302, "cancel", "service-unavailable", None),
        ];
        for (status, error_type, condition, text) in table {
            assert_eq!(status_error(status), StanzaError { error_type, condition, text }, "HTTP {status}");
        }
    }

    #[test]
    fn an_iq_without_an_id_is_never_answered() {
        let orig = Incoming { id: None, ..Incoming::sample("iq", Some("get")) };
        for outcome in
            [Outcome::NoReply, Outcome::Reply(Element::new("iq").into()), Outcome::Error(INTERNAL, "x".into())]
        {
            assert_eq!(complete(&orig, outcome).send, None);
        }
    }

    #[test]
    fn active_goes_only_with_a_reply_to_the_sender() {
        let orig = Incoming::sample("message", Some("chat"));
        let reply_to = |to: &str| Completion {
            send: Some(Element::new("message").with_attr("type", "chat").with_attr("to", to)),
            log: None,
        };
        let mut to_sender = reply_to("user@localhost/phone");
        assert!(mark_active(&mut to_sender, &orig));
        assert!(to_sender.send.unwrap().to_xml().contains("<active xmlns"));
        // Found by review: a message to a third party carried the sender's chat state.
        let mut elsewhere = reply_to("carol@localhost");
        assert!(!mark_active(&mut elsewhere, &orig));
        assert!(!elsewhere.send.unwrap().to_xml().contains("active"));
    }

    #[test]
    fn a_receipt_acknowledges_the_message_id_from_the_jid_written_to() {
        let orig = Incoming { receipt_request: true, ..Incoming::sample("message", Some("chat")) };
        let receipt = receipt(&orig, &Outcome::NoReply, "r-1").unwrap();
        assert_eq!(
            receipt.to_xml(),
            "<message id='r-1' to='user@localhost/phone' from='echo@bot.localhost'>\
             <received xmlns='urn:xmpp:receipts' id='abc'/></message>"
        );
        assert_eq!(super::receipt(&orig, &Outcome::Reply(Element::new("message").into()), "r-1"), Some(receipt));
    }

    #[test]
    fn a_receipt_is_sent_only_when_asked_and_accepted() {
        let asked = Incoming { receipt_request: true, ..Incoming::sample("message", Some("chat")) };
        for error in [status_error(500), TIMED_OUT, BAD_REPLY, CONNECTION_FAILURE] {
            assert_eq!(receipt(&asked, &Outcome::Error(error, "x".into()), "r"), None);
        }
        let not_asked = Incoming::sample("message", Some("chat"));
        assert_eq!(receipt(&not_asked, &Outcome::NoReply, "r"), None);
        let no_id = Incoming { id: None, ..asked.clone() };
        assert_eq!(receipt(&no_id, &Outcome::NoReply, "r"), None);
    }

    #[test]
    fn log_lines_cannot_be_forged() {
        assert_eq!(loggable("plain text ☺"), "plain text ☺");
        assert_eq!(loggable("a\nwarn forged\r\u{1b}[31m"), "a\\nwarn forged\\r\\u{1b}[31m");
    }
}
