//! The conversation a stanza belongs to when it came from a group chat room, and where its
//! answer goes by default: plain data, kept with the stanza while it is posted
//! ([`crate::stanza::Incoming::room`]), read by the request, the reply and the outcome alike.
//! The room logic that decides these values lives in [`crate::room`]; this module depends on
//! nothing, so the stanza, the answer and the outcome can carry it without depending on the
//! rooms.
//!
//! A reply that names its own `to` or `type` is honoured (the policy checks it as any other);
//! these are only the defaults. No error outcome (an HTTP error, a timeout, a full queue) is ever
//! sent for a room message or an occupant's presence: in the room it would be said to everyone,
//! and to an occupant Prosody's MUC takes an error such as `remote-server-timeout` or
//! `service-unavailable` as the bot's connection failing and kicks it (status 333).
//! [`crate::outcome::complete`] logs it instead.

/// The fields a request for a room message carries besides the usual ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomFields {
    /// The message's type: `groupchat`, or `chat`/`normal` for a private message; `presence`
    /// for another occupant's presence (see `room::lua`).
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
    /// Whether this is a private message (`chat` or `normal`) rather than one said in the room.
    pub fn is_private(&self) -> bool {
        self.message_type != "groupchat"
    }
}

/// What the answer to a room message needs: the fields it was POSTed with, and who the bot is
/// there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomContext {
    /// The room fields of the request.
    pub fields: RoomFields,
    /// The JID on the component that joined the room (`room::Occupant::from`); for a private
    /// message, the JID it was sent to.
    pub bot_from: String,
}

impl RoomContext {
    /// The defaults of the answer to a message `from` an occupant `to` the bot: to the room for
    /// what was said in it, from the bot's occupant; to the occupant for a private message,
    /// from the JID it was sent to.
    pub fn reply(&self, from: &str, to: &str) -> RoomReply {
        if self.fields.is_private() {
            RoomReply { to: from.to_owned(), reply_type: "chat", from: to.to_owned() }
        } else {
            RoomReply { to: self.fields.room.clone(), reply_type: "groupchat", from: self.bot_from.clone() }
        }
    }
}

/// The defaults of an answer to a room message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomReply {
    /// The bare room JID for a room message; the occupant's JID for a private message.
    pub to: String,
    /// `groupchat`, or `chat` for a private message.
    pub reply_type: &'static str,
    /// The JID that joined the room: the room only accepts what its occupant sends.
    pub from: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context(message_type: &str, mentioned: Option<bool>) -> RoomContext {
        let fields = RoomFields {
            message_type: message_type.into(),
            room: "dev@conference.localhost".into(),
            nick: "alice".into(),
            mentioned,
        };
        RoomContext { fields, bot_from: "bot.localhost".into() }
    }

    #[test]
    fn a_room_message_is_answered_in_the_room() {
        assert_eq!(
            context("groupchat", Some(false)).reply("dev@conference.localhost/alice", "bot.localhost"),
            RoomReply { to: "dev@conference.localhost".into(), reply_type: "groupchat", from: "bot.localhost".into() }
        );
    }

    #[test]
    fn a_private_message_is_answered_privately() {
        assert_eq!(
            context("chat", None).reply("dev@conference.localhost/alice", "bot.localhost"),
            RoomReply { to: "dev@conference.localhost/alice".into(), reply_type: "chat", from: "bot.localhost".into() }
        );
    }
}
