//! A streamed answer on the dispatcher's side (see [`crate::stream`] for the contract and the
//! schedule): the worker reads the body piece by piece and applies every piece of a read to
//! the job's [`Draft`], under the state lock; the stanzas that fall due go out as completions,
//! one each, from the worker after a read or from the keeper while the worker waits for the
//! next piece. The worker alone ends a stream (or `close`, which takes its entry first).
//!
//! While an answer streams to a conversation, every other message with a body for it is held
//! ([`Completions::chats`], in `Shared::push`) and sent after the answer's last stanza: XEP-0308
//! clients correct only the newest message, so nothing may come between the first message
//! and its corrections. A conversation is the bot's bare JID and the other side's bare JID (the
//! user, whichever of their clients; or the room).

use std::io::Read;

use super::*;
use crate::answer::stream_template;
use crate::http::{read_by, StreamedAnswer};
use crate::outcome::{chat_state, mark_active, receipt, BAD_REPLY};
use crate::stanza::{Element, Node};
use crate::stream::{last_completion, stanzas, Cut, Draft, Ending, Event, Finish, Limits, Parser, Stage};

/// How much of a stream one read takes at most.
const READ_SIZE: usize = 16 * 1024;

/// A conversation: the bot's bare JID, the other side's bare JID.
pub(super) type Chat = (String, String);

/// A streamed answer being written: kept in its stanza's [`InFlight`] entry.
pub(super) struct Streaming {
    draft: Draft,
    /// The message every stanza is made from, once the first object came.
    template: Option<Element>,
    /// Where it goes, with the template.
    chat: Option<Chat>,
    /// Its stanzas carry chat states.
    chat_states: bool,
    /// Its first message went: the conversation is held for it.
    holds_chat: bool,
}

/// The conversation a completion's stanza belongs to, if it moves a message in one: a message
/// with a body (chat states, receipts, presences and iqs move none).
pub(super) fn chat_of_completion(completion: &Completion) -> Option<Chat> {
    let stanza = completion.send.as_ref()?;
    let has_body = stanza.children.iter().any(|child| matches!(child, Node::Element(e) if e.name == "body"));
    (stanza.name == "message" && has_body).then(|| chat_of(stanza)).flatten()
}

fn chat_of(stanza: &Element) -> Option<Chat> {
    let bare = |jid: &str| jid.split_once('/').map_or(jid, |(bare, _)| bare).to_owned();
    Some((bare(stanza.attr("from")?), bare(stanza.attr("to")?)))
}

/// Whether a stanza may be answered by a stream: a message that is not an error (an iq
/// request is answered by exactly one stanza, and an error is never answered).
fn streamable(incoming: &Incoming) -> bool {
    incoming.name == "message" && incoming.stanza_type.as_deref() != Some("error")
}

impl Shared {
    /// Reads a streamed answer to its end and ends it: the worker's part of a stream.
    pub(super) fn stream(self: &Arc<Self>, job: Job, answer: StreamedAnswer, jitter: &mut Jitter) {
        if !streamable(&job.incoming) {
            drop(answer); // unread: the connection closes
            let why = format!("webhook reply refused: a {} cannot be answered with a stream", job.incoming.name);
            self.finish(job, Outcome::Error(BAD_REPLY, why), jitter);
            return;
        }
        let settings = self.settings();
        let config = &settings.config;
        let limits = Limits::of(config, config.stream);
        let mut parser = Parser::new(answer.framing, limits.max_text, &config.profile.option("max_reply_size"));
        {
            let mut state = lock(&self.state);
            // A 200: the webhook answers, whatever the stream brings.
            let start = self.webhook_answers(&mut state);
            let chat_states = state.limits.chat_states && job.incoming.chat_states;
            let open = match state.in_flight.get_mut(&job.id) {
                Some(entry) => {
                    let draft = Draft::new(&job.delivery_id, limits, Instant::now());
                    let streaming = Streaming { draft, template: None, chat: None, chat_states, holds_chat: false };
                    entry.stream = Some(Box::new(streaming));
                    true
                }
                None => false, // closed meanwhile, and answered by `close`
            };
            // Accepted: the receipt goes now, not when the answer is finished.
            let receipt_id = format!("{}-receipt", job.delivery_id);
            if let Some(receipt) = receipt(&job.incoming, &Outcome::NoReply, &receipt_id).filter(|_| open) {
                self.push(Completion { send: Some(receipt), log: None });
            }
            drop(state);
            self.spawn_workers(start);
            if !open {
                return;
            }
        }
        let mut body = answer.body;
        let mut buffer = vec![0; READ_SIZE];
        loop {
            let deadline = match lock(&self.state).in_flight.get(&job.id).and_then(|entry| entry.stream.as_ref()) {
                Some(streaming) => streaming.draft.deadline(),
                None => return, // `close` ended it
            };
            read_by(Some(deadline));
            let read = body.read(&mut buffer);
            let now = Instant::now();
            let broken = match read {
                Ok(0) => {
                    parser.end();
                    None
                }
                Ok(n) => {
                    parser.push(&buffer[..n]);
                    None
                }
                Err(e) => Some(e.to_string()),
            };
            let mut state = lock(&self.state);
            let Some(streaming) = state.in_flight.get_mut(&job.id).and_then(|entry| entry.stream.as_mut()) else {
                return;
            };
            // Every piece of this read first, so an answer that arrived whole is one message.
            let ending = apply_events(streaming, &mut parser, &job.incoming, &config.host, now)
                .or_else(|| streaming.draft.expired(now).map(Ending::Cut))
                .or_else(|| broken.map(|why| Ending::Cut(Cut::broken(&why))));
            match ending {
                Some(ending) => {
                    let entry = state.in_flight.remove(&job.id).expect("looked up under this lock");
                    let streaming = entry.stream.expect("looked up under this lock");
                    let composing_sent = job.composing_sent || entry.composing == Composing::Sent;
                    let chat_states_wanted = state.limits.chat_states && job.incoming.chat_states;
                    let last = self.end_stream(&job.incoming, *streaming, &ending);
                    // After a `<composing/>`, an ending without a stanza in the chat ends it.
                    if last && composing_sent && chat_states_wanted {
                        self.push(Completion { send: Some(chat_state(&job.incoming, "active")), log: None });
                    }
                    self.release_line(&mut state, job.line.as_deref());
                    return; // the body is dropped unread past `[DONE]`
                }
                None => {
                    if let Some(entry) = state.in_flight.get_mut(&job.id) {
                        if let Some(next) = self.poll_stream(entry, now) {
                            self.wake_keeper_by(&mut state, next);
                        }
                    }
                }
            }
        }
    }

    /// Sends the stanza of a stream that is due at `now`, if any (the worker after a read, the
    /// keeper while it waits); when it should look again.
    pub(super) fn poll_stream(&self, entry: &mut InFlight, now: Instant) -> Option<Instant> {
        let streaming = entry.stream.as_mut()?;
        let (Some(template), Some(chat)) = (&streaming.template, &streaming.chat) else { return None };
        let due = streaming.draft.next_due()?;
        if due > now {
            return Some(due);
        }
        if !streaming.holds_chat {
            let mut completions = lock(&self.completions);
            if completions.chats.contains_key(chat) {
                // Another answer streams to the same conversation: this one waits (its text
                // grows meanwhile) and is looked at again when that one ends.
                return None;
            }
            completions.chats.insert(chat.clone(), Vec::new());
            streaming.holds_chat = true;
        }
        while let Some(update) = streaming.draft.poll(now) {
            if update.stage == Stage::First {
                entry.composing = Composing::Sent; // the first message carries `<composing/>`
            }
            let stanza = stanzas::build(template, &update, streaming.chat_states);
            self.push_unheld(Completion { send: Some(stanza), log: None });
        }
        streaming.draft.next_due()
    }

    /// Ends a stream: its last completion (the final correction, the whole answer in one
    /// message, or the error if there was no text), counted; then the messages held for its
    /// conversation. True when that left the sender without a stanza in the chat (see
    /// `mark_active`), so a standalone `<active/>` may be owed.
    pub(super) fn end_stream(&self, incoming: &Incoming, streaming: Streaming, ending: &Ending) -> bool {
        let Streaming { draft, template, chat, chat_states, holds_chat } = streaming;
        let finish = draft.finish(ending);
        let counted = match (&finish, ending) {
            (Finish::NoText, Ending::Complete) => Outcome::NoReply,
            (Finish::NoText, Ending::Cut(cut)) => cut.outcome(),
            // Counted as a reply; the stanza itself is not needed for that.
            _ => Outcome::Reply(Element::new("message")),
        };
        lock(&self.stats).outcome(&counted);
        let mut completion = match template {
            Some(template) => last_completion(incoming, &template, finish, ending, chat_states),
            // No object came, so no text either: nothing to say, or the error.
            None => complete(incoming, if matches!(counted, Outcome::Reply(_)) { Outcome::NoReply } else { counted }),
        };
        let in_chat = chat_states && mark_active(&mut completion, incoming);
        match chat.filter(|_| holds_chat) {
            Some(chat) => {
                let mut completions = lock(&self.completions);
                let held = completions.chats.remove(&chat).unwrap_or_default();
                completions.list.push(completion);
                completions.list.extend(held);
                self.arm(&mut completions);
                drop(completions);
                // A stream waiting for this conversation may go on.
                self.keeper.notify_one();
            }
            None => self.push(completion),
        }
        !in_chat
    }

    /// Sends every message held for a conversation (closing: no stream will end them).
    pub(super) fn release_every_chat(&self) {
        let mut completions = lock(&self.completions);
        let held: Vec<Completion> = completions.chats.drain().flat_map(|(_, held)| held).collect();
        if !held.is_empty() {
            completions.list.extend(held);
            self.arm(&mut completions);
        }
    }

    /// A stream's own stanza: never held for its conversation.
    fn push_unheld(&self, completion: Completion) {
        let mut completions = lock(&self.completions);
        completions.list.push(completion);
        self.arm(&mut completions);
    }
}

/// Applies every event the parser has: the first object's fields make the template, each
/// piece changes the text. The ending, if one of them ends the stream.
fn apply_events(
    streaming: &mut Streaming,
    parser: &mut Parser,
    incoming: &Incoming,
    host: &str,
    now: Instant,
) -> Option<Ending> {
    while let Some(event) = parser.next_event() {
        let piece = match event {
            Ok(Event::Piece(piece)) => piece,
            Ok(Event::End) => return Some(Ending::Complete),
            Err(why) => return Some(Ending::Cut(Cut::malformed(&why))),
        };
        if let Some(fields) = piece.fields {
            match stream_template(incoming, &fields, host) {
                Ok(template) => {
                    streaming.chat = chat_of(&template);
                    streaming.template = Some(template);
                }
                Err(why) => return Some(Ending::Cut(Cut::malformed(&format!("webhook reply refused: {why}")))),
            }
        }
        if let Err(cut) = streaming.draft.on_piece(piece.edit, now) {
            return Some(Ending::Cut(cut));
        }
    }
    None
}
