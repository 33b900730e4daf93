//! What a message from a room means for the webhook: POSTed with the room's fields, POSTed as
//! any other message, or never POSTed. The rules that keep a room bot from talking to itself
//! live here: the bot's own messages come back from the room, and so does history.

use super::facts::MessageFacts;
use super::membership::{occupant_parts as split, Occupant, Rooms};
use super::mention::mentions;
use super::options::GroupchatMode;
use crate::jid;

/// The fields a request for a room message carries besides the usual ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomFields {
    /// The message's type: `groupchat`, or `chat`/`normal` for a private message.
    pub message_type: String,
    /// The bare room JID.
    pub room: String,
    /// The sender's nick in the room.
    pub nick: String,
    /// Whether the message names the bot or replies to it; `None` for a private message, which
    /// is addressed to the bot by nature.
    pub mentioned: Option<bool>,
}

impl RoomFields {
    pub fn is_private(&self) -> bool {
        self.message_type != "groupchat"
    }
}

/// Why a message from a room is not POSTed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// The room reflecting what the bot said: answering it is how bots loop.
    OwnMessage,
    /// A `groupchat` message from a room the bot is not in (or not yet): without its nick there
    /// its own messages cannot be told apart.
    NotInRoom,
    /// Said by the room itself (configuration changes, announcements), not by an occupant.
    FromTheRoom,
    Subject,
    /// Carries delayed delivery: history, said before the bot came.
    History,
    /// No body: chat states, receipts, markers of every occupant.
    NoBody,
    /// `"mentions"` mode, and the message does not mention the bot.
    NotMentioned,
    /// An error from the room (see [`Rooms::on_error_message`]).
    Error,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// POSTed, with these fields.
    Room(RoomFields),
    /// Not from a room the bot knows: POSTed as any other message.
    NotFromARoom,
    Skip(Skip),
}

/// Where the bot stands in the room a message comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoomView<'a> {
    /// Not a room the bot wants or has been in.
    Unknown,
    /// A room the bot wants, but is not in now.
    NotJoined,
    Joined(&'a Occupant),
}

/// Decides what `message` means, given where the bot stands in its room and the mode.
pub fn classify(message: &MessageFacts, view: RoomView<'_>, mode: GroupchatMode) -> Verdict {
    let groupchat = message.message_type.as_deref() == Some("groupchat");
    if view == RoomView::Unknown {
        return if groupchat { Verdict::Skip(Skip::NotInRoom) } else { Verdict::NotFromARoom };
    }
    if message.message_type.as_deref() == Some("error") {
        return Verdict::Skip(Skip::Error);
    }
    let Some((room, Some(nick))) = split(&message.from) else {
        return Verdict::Skip(Skip::FromTheRoom);
    };
    if !groupchat {
        // A private message from an occupant: POSTed, its sender named.
        let message_type = message.message_type.clone().unwrap_or_else(|| "normal".into());
        return Verdict::Room(RoomFields { message_type, room, nick, mentioned: None });
    }
    let RoomView::Joined(bot) = view else { return Verdict::Skip(Skip::NotInRoom) };
    if nick == bot.nick {
        return Verdict::Skip(Skip::OwnMessage);
    }
    if message.has_subject && message.body.is_none() {
        return Verdict::Skip(Skip::Subject);
    }
    if message.delayed {
        return Verdict::Skip(Skip::History);
    }
    let Some(body) = &message.body else { return Verdict::Skip(Skip::NoBody) };
    let replies_to_bot =
        message.reply_to.as_deref().and_then(|to| jid::prep(to).ok()).is_some_and(|to| to.to_string() == bot.jid());
    let mentioned = replies_to_bot || mentions(body, &bot.nick);
    if mode == GroupchatMode::Mentions && !mentioned {
        return Verdict::Skip(Skip::NotMentioned);
    }
    Verdict::Room(RoomFields { message_type: "groupchat".into(), room, nick, mentioned: Some(mentioned) })
}

impl Rooms {
    /// [`classify`] with the bot's place in the message's room.
    pub fn classify_message(&self, message: &MessageFacts, mode: GroupchatMode) -> Verdict {
        let Some((room, _)) = split(&message.from) else { return classify(message, RoomView::Unknown, mode) };
        let occupant = self.occupant(&room);
        let view = match &occupant {
            Some(occupant) => RoomView::Joined(occupant),
            None if self.knows(&room) => RoomView::NotJoined,
            None => RoomView::Unknown,
        };
        classify(message, view, mode)
    }
}
