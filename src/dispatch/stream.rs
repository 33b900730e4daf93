//! A streamed answer on the dispatcher's side (see [`crate::stream`] for the contract and the
//! schedule): the worker reads the body piece by piece and applies every piece of a read to
//! the job's [`Draft`], under the stream's own lock ([`Slot`]); the stanzas that fall due go out as completions,
//! one each, from the worker after a read or from the keeper while the worker waits for the
//! next piece. The worker alone ends a stream (or `close`, which takes its entry first).
//!
//! While an answer streams to a conversation, every other message with a body for it is held
//! ([`Completions::chats`], in `Shared::push`) and sent after the answer's last stanza: XEP-0308
//! clients correct only the newest message, so nothing may come between the first message
//! and its corrections. A conversation is the bot's bare JID and the other side's bare JID (the
//! user, whichever of their clients; or the room).

use std::panic::{catch_unwind, AssertUnwindSafe};

use super::*;
use crate::answer::stream_template;
use crate::http::StreamedAnswer;
use crate::outcome::{chat_state, complete, describe, mark_active, receipt, Level, BAD_REPLY};
use crate::stanza::{Element, Node};
use crate::stream::{end_completion, stanzas, Cut, Draft, EndStanza, Event, Parser, Stage, StreamEnd};
use crate::transport::Response;

/// Where a test's hook is called (see `Shared::hook`).
#[cfg(test)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Hook {
    /// The worker is about to apply the pieces of a read.
    Applying,
    /// A stream's due stanzas are about to be sent (by its worker or the keeper).
    Polling,
    /// A stream's last stanza is about to be made.
    Concluding,
}

/// A conversation: the bot's bare JID, the other side's bare JID.
pub(super) type Chat = (String, String);

/// A streamed answer being written, shared by its worker, the keeper and `close` (each ends it
/// by taking it, so it ends once), and kept in its stanza's [`InFlight`] entry. Its own lock:
/// applying a piece and building a stanza never hold the dispatcher's state or completions
/// lock, so `submit` and `drain` on Prosody's main thread never wait for a stream's work.
/// Lock order: a stream's slot, then `state`, then `completions`.
pub(super) type Slot = Arc<Mutex<Option<Streaming>>>;

/// A stream's last completion, made; see `Shared::deliver`.
struct Concluded {
    completion: Completion,
    /// The conversation it held, to release.
    held_chat: Option<Chat>,
    /// The completion leaves the sender without a stanza in the chat.
    owes_active: bool,
}

/// A streamed answer being written (see [`Slot`]).
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
    /// Its stanza's line, to let go if a panic ends the stream (see `Shared::abandon_stream`).
    line: Option<String>,
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
    pub(super) async fn stream(self: &Arc<Self>, job: Job, answer: StreamedAnswer, jitter: &mut Jitter) {
        if !streamable(&job.incoming) {
            drop(answer); // unread: the connection closes
            let why = format!("webhook reply refused: a {} cannot be answered with a stream", job.incoming.name);
            self.finish(job, Outcome::Error(BAD_REPLY, why), jitter);
            return;
        }
        let settings = self.settings();
        let config = &settings.config;
        let limits = config.stream_limits();
        let parser = Parser::new(answer.framing, limits.max_text, &config.profile.option("max_reply_size"));
        let slot = {
            let mut state = lock(&self.state);
            // A 200: the webhook answers, whatever the stream brings.
            let start = self.webhook_answers(&mut state);
            let chat_states = state.limits.chat_states_wanted(&job.incoming);
            let slot = state.in_flight.get_mut(&job.id).map(|entry| {
                let draft = Draft::new(&job.delivery_id, limits, Instant::now());
                let streaming = Streaming {
                    draft,
                    template: None,
                    chat: None,
                    chat_states,
                    holds_chat: false,
                    line: job.line.clone(),
                };
                let slot = Arc::new(Mutex::new(Some(streaming)));
                entry.stream = Some(Arc::clone(&slot));
                slot
            }); // None: closed meanwhile, and answered by `close`
                // Accepted: the receipt goes now, not when the answer is finished.
            let receipt_id = format!("{}-receipt", job.delivery_id);
            if let Some(receipt) = receipt(&job.incoming, &Outcome::NoReply, &receipt_id).filter(|_| slot.is_some()) {
                self.push(Completion { send: Some(receipt), log: None });
            }
            drop(state);
            self.spawn_workers(start);
            slot
        };
        let Some(slot) = slot else { return };
        // A panic (a bug) ends this stream alone, with a clear cut and a log line, and lets go
        // of its conversation and its sender's line; the worker carries on.
        let read = worker::Guarded(Box::pin(self.read_stream(&job, &slot, answer.body, parser, &config.host))).await;
        if read.is_none() {
            self.abandon_stream(job.id, &job.incoming, &slot);
        }
    }

    /// Ends a stream a panic broke (while it was read, or polled by the keeper), if nothing
    /// ended it yet: its text so far and the cut marker, or the error if it had none, with a
    /// log line; then its conversation and its sender's line are let go.
    pub(super) fn abandon_stream(&self, id: u64, incoming: &Incoming, slot: &Slot) {
        let mut guard = lock(slot);
        // None: ended already, by its worker (whose own ending is guarded), `close`, or the keeper.
        let Some(streaming) = guard.take() else { return };
        let line = streaming.line.clone();
        let concluded = self.conclude(incoming, streaming, &StreamEnd::Cut(Cut::internal()));
        let mut state = lock(&self.state);
        state.in_flight.remove(&id);
        if self.deliver(incoming, concluded, &state.limits).0 {
            self.wake_keeper_by(&mut state, Instant::now());
        }
        self.release_line(&mut state, line.as_deref());
    }

    /// The worker's loop: a read (no lock held), its pieces applied and the stanzas due sent
    /// under the stream's own lock, until the stream ends (or `close` ended it).
    async fn read_stream(&self, job: &Job, slot: &Slot, mut body: Response, mut parser: Parser, host: &str) {
        loop {
            let deadline = match lock(slot).as_ref() {
                Some(streaming) => streaming.draft.deadline(),
                None => return, // `close` ended it
            };
            // Each read ends by the stream's deadline, which moves on as pieces come.
            let read = body.next_piece(deadline).await;
            let now = Instant::now();
            let broken = match read {
                Ok(None) => {
                    parser.end();
                    None
                }
                Ok(Some(piece)) => {
                    parser.push(&piece);
                    None
                }
                Err(e) => Some(e.to_string()),
            };
            let mut guard = lock(slot);
            let Some(streaming) = guard.as_mut() else { return };
            #[cfg(test)]
            self.run_hook(Hook::Applying);
            // Every piece of this read first, so an answer that arrived whole is one message.
            let ending = apply_events(streaming, &mut parser, &job.incoming, host, now)
                .or_else(|| streaming.draft.expired(now).map(StreamEnd::Cut))
                .or_else(|| broken.map(|why| StreamEnd::Cut(Cut::broken(&why))));
            if let Some(ending) = ending {
                let streaming = guard.take().expect("looked at under this lock");
                // Still under the stream's lock: `close`, which waits for it, finds it ended
                // and its last stanza queued.
                self.settle_stream(job, streaming, &ending);
                return; // the body is dropped unread past `[DONE]`
            }
            let (next, first) = self.poll_stream(streaming, now);
            drop(guard);
            let mut state = lock(&self.state);
            if first {
                if let Some(entry) = state.in_flight.get_mut(&job.id) {
                    entry.composing = Composing::Sent; // the first message carries `<composing/>`
                }
            }
            if let Some(next) = next {
                self.wake_keeper_by(&mut state, next);
            }
        }
    }

    /// The worker ends its stream: the last stanza made without the state lock, then, under
    /// it, the stanza's entry removed, the last stanza and the messages held for it queued,
    /// and the sender's line let go.
    fn settle_stream(&self, job: &Job, streaming: Streaming, ending: &StreamEnd) {
        let first_sent = streaming.draft.first_sent();
        let concluded = self.conclude(&job.incoming, streaming, ending);
        let mut state = lock(&self.state);
        let entry = state.in_flight.remove(&job.id);
        let composing_sent =
            first_sent || job.composing_sent || entry.is_some_and(|entry| entry.composing == Composing::Sent);
        let chat_states_wanted = state.limits.chat_states_wanted(&job.incoming);
        let (released, owes_active) = self.deliver(&job.incoming, concluded, &state.limits);
        // After a `<composing/>`, an ending without a stanza in the chat ends it.
        if owes_active && composing_sent && chat_states_wanted {
            self.push(Completion { send: Some(chat_state(&job.incoming, "active")), log: None });
        }
        if released {
            // A stream waiting for this conversation may go on.
            self.wake_keeper_by(&mut state, Instant::now());
        }
        self.release_line(&mut state, job.line.as_deref());
    }

    /// Sends the stanzas of a stream that are due at `now`, if any (the worker after a read,
    /// the keeper while it waits), under the stream's own lock: when it should look again,
    /// and whether the first message just went.
    pub(super) fn poll_stream(&self, streaming: &mut Streaming, now: Instant) -> (Option<Instant>, bool) {
        #[cfg(test)]
        self.run_hook(Hook::Polling);
        let (Some(template), Some(chat)) = (&streaming.template, &streaming.chat) else { return (None, false) };
        let Some(due) = streaming.draft.next_due() else { return (None, false) };
        if due > now {
            return (Some(due), false);
        }
        if !streaming.holds_chat {
            let mut completions = lock(&self.completions);
            if completions.chats.contains_key(chat) {
                // Another answer streams to the same conversation: this one waits (its text
                // grows meanwhile) and is looked at again when that one ends.
                return (None, false);
            }
            completions.chats.insert(chat.clone(), Vec::new());
            streaming.holds_chat = true;
        }
        let mut first = false;
        while let Some(update) = streaming.draft.poll(now) {
            first |= update.stage == Stage::First;
            let stanza = stanzas::build(template, &update, streaming.chat_states);
            self.push_unheld(Completion { send: Some(stanza), log: None });
        }
        (streaming.draft.next_due(), first)
    }

    /// Ends a stream that `close` took: its last stanza, then the messages held for it.
    pub(super) fn end_stream(&self, incoming: &Incoming, streaming: Streaming, ending: &StreamEnd) {
        let concluded = self.conclude(incoming, streaming, ending);
        // Closing: every message held is sent now, so none is refused.
        let unbounded = PoolLimits { queue_size: usize::MAX, ..lock(&self.state).limits };
        self.deliver(incoming, concluded, &unbounded);
    }

    /// A stream's last completion (the final correction, the whole answer in one message, or
    /// the error if there was no text), counted: the costly part of ending it, done without
    /// the dispatcher's locks.
    /// Under a guard of its own: if even the last stanza cannot be made (a bug), the log says
    /// so and the conversation is let go all the same.
    fn conclude(&self, incoming: &Incoming, streaming: Streaming, ending: &StreamEnd) -> Concluded {
        let held_chat = streaming.chat.clone().filter(|_| streaming.holds_chat);
        catch_unwind(AssertUnwindSafe(|| self.conclude_unguarded(incoming, streaming, ending))).unwrap_or_else(|_| {
            let log = Some((Level::Error, internal_error(incoming)));
            Concluded { completion: Completion { send: None, log }, held_chat, owes_active: true }
        })
    }

    fn conclude_unguarded(&self, incoming: &Incoming, streaming: Streaming, ending: &StreamEnd) -> Concluded {
        #[cfg(test)]
        self.run_hook(Hook::Concluding);
        let Streaming { draft, template, chat, chat_states, holds_chat, .. } = streaming;
        let finish = draft.end_stanza(ending);
        let counted = match (&finish, ending) {
            (EndStanza::NoText, StreamEnd::Complete) => Outcome::NoReply,
            (EndStanza::NoText, StreamEnd::Cut(cut)) => cut.outcome(),
            // Counted as a reply; the stanza itself is not needed for that.
            _ => Outcome::Reply(Element::new("message").into()),
        };
        lock(&self.stats).outcome(&counted);
        let mut completion = match template {
            Some(template) => end_completion(incoming, &template, finish, ending, chat_states),
            // No object came, so no text either: nothing to say, or the error.
            None => complete(incoming, if matches!(counted, Outcome::Reply(_)) { Outcome::NoReply } else { counted }),
        };
        let in_chat = chat_states && mark_active(&mut completion, incoming);
        Concluded { completion, held_chat: chat.filter(|_| holds_chat), owes_active: !in_chat }
    }

    /// Queues a stream's last completion, then the messages held for its conversation. Whether
    /// that released a conversation, and whether the sender is owed a standalone `<active/>`
    /// (the completion left it without a stanza in the chat: see `mark_active`).
    /// A stream that never held its conversation (another answer streamed to it) ends like any
    /// answer: after that one, within the bound on messages held.
    fn deliver(&self, incoming: &Incoming, concluded: Concluded, limits: &PoolLimits) -> (bool, bool) {
        let Concluded { completion, held_chat, owes_active } = concluded;
        match held_chat {
            Some(chat) => {
                let mut completions = lock(&self.completions);
                let held = completions.chats.remove(&chat).unwrap_or_default();
                completions.held -= held.len();
                completions.list.push(completion);
                completions.list.extend(held);
                self.arm(&mut completions);
                (true, owes_active)
            }
            None => {
                let refused = self.push_reply(incoming, completion, Vec::new(), limits);
                (false, owes_active || refused)
            }
        }
    }

    /// Sends every message held for a conversation (closing: no stream will end them).
    pub(super) fn release_every_chat(&self) {
        let mut completions = lock(&self.completions);
        let held: Vec<Completion> = completions.chats.drain().flat_map(|(_, held)| held).collect();
        completions.held = 0;
        if !held.is_empty() {
            completions.list.extend(held);
            self.arm(&mut completions);
        }
    }

    /// Calls the test's hook, if one is set.
    #[cfg(test)]
    fn run_hook(&self, at: Hook) {
        let hook = lock(&self.hook).clone();
        if let Some(hook) = hook {
            hook(self, at);
        }
    }

    /// A stream's own stanza: never held for its conversation.
    fn push_unheld(&self, completion: Completion) {
        let mut completions = lock(&self.completions);
        completions.list.push(completion);
        self.arm(&mut completions);
    }
}

/// The log line of a stream a panic ended without even its last stanza.
fn internal_error(incoming: &Incoming) -> String {
    format!(
        "{}: streamed answer ended without its last stanza: internal error (a bug in mod_component_http)",
        describe(incoming)
    )
}

/// Applies every event the parser has: the first object's fields make the template, each
/// piece changes the text. The ending, if one of them ends the stream.
fn apply_events(
    streaming: &mut Streaming,
    parser: &mut Parser,
    incoming: &Incoming,
    host: &str,
    now: Instant,
) -> Option<StreamEnd> {
    while let Some(event) = parser.next_event() {
        let piece = match event {
            Ok(Event::Piece(piece)) => piece,
            Ok(Event::End) => return Some(StreamEnd::Complete),
            Err(why) => return Some(StreamEnd::Cut(Cut::malformed(&why))),
        };
        if let Some(fields) = piece.fields {
            match stream_template(incoming, &fields, host) {
                Ok(template) => {
                    streaming.chat = chat_of(&template);
                    streaming.template = Some(template);
                }
                Err(why) => return Some(StreamEnd::Cut(Cut::malformed(&format!("webhook reply refused: {why}")))),
            }
        }
        if let Err(cut) = streaming.draft.on_piece(piece.edit, now) {
            return Some(StreamEnd::Cut(cut));
        }
    }
    None
}
