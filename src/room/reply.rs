//! Where the answer to a room message goes when the webhook's reply does not say, and what else
//! may be sent for it. A reply that names its own `to` or `type` is honoured (the policy checks
//! it as any other); these are only the defaults.
//!
//! No error outcome (an HTTP error, a timeout, a full queue) is ever sent for a room message or
//! an occupant's presence: in the room it would be said to everyone, and to an occupant Prosody's
//! MUC takes an error such as `remote-server-timeout` or `service-unavailable` as the bot's
//! connection failing and kicks it (status 333). [`crate::outcome::complete`] logs it instead.

use super::facts::MessageFacts;
use super::message::RoomFields;

/// What the answer to a room message needs, kept with the stanza while it is posted
/// ([`crate::stanza::Incoming::room`]): the fields it was POSTed with, and who the bot is there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomContext {
    /// The room fields of the request.
    pub fields: RoomFields,
    /// The JID on the component that joined the room ([`super::Occupant::from`]); for a private
    /// message, the JID it was sent to.
    pub bot_from: String,
}

impl RoomContext {
    /// The defaults of the answer (see [`RoomReply::defaults`]) to `orig`.
    pub fn reply(&self, orig: &crate::stanza::Incoming) -> RoomReply {
        let message = MessageFacts {
            from: orig.from.clone().unwrap_or_default(),
            to: orig.to.clone().unwrap_or_default(),
            ..Default::default()
        };
        RoomReply::defaults(&self.fields, &message, &self.bot_from)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
/// The defaults of an answer to a room message.
pub struct RoomReply {
    /// The bare room JID for a room message; the occupant's JID for a private message.
    pub to: String,
    /// `groupchat`, or `chat` for a private message.
    pub reply_type: &'static str,
    /// The JID that joined the room: the room only accepts what its occupant sends.
    pub from: String,
}

impl RoomReply {
    /// The defaults for answering `message`, POSTed with `fields`, where the bot's occupant is
    /// `bot_from` (from [`super::Occupant::from`] when the message was classified).
    pub fn defaults(fields: &RoomFields, message: &MessageFacts, bot_from: &str) -> RoomReply {
        if fields.is_private() {
            RoomReply { to: message.from.clone(), reply_type: "chat", from: message.to.clone() }
        } else {
            RoomReply { to: fields.room.clone(), reply_type: "groupchat", from: bot_from.to_owned() }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(from: &str, message_type: &str) -> MessageFacts {
        MessageFacts {
            from: from.into(),
            to: "bot.localhost".into(),
            message_type: Some(message_type.into()),
            body: Some("hi".into()),
            ..Default::default()
        }
    }

    fn fields(message_type: &str, mentioned: Option<bool>) -> RoomFields {
        RoomFields {
            message_type: message_type.into(),
            room: "dev@conference.localhost".into(),
            nick: "alice".into(),
            mentioned,
        }
    }

    #[test]
    fn a_room_message_is_answered_in_the_room() {
        let said = message("dev@conference.localhost/alice", "groupchat");
        assert_eq!(
            RoomReply::defaults(&fields("groupchat", Some(false)), &said, "bot.localhost"),
            RoomReply { to: "dev@conference.localhost".into(), reply_type: "groupchat", from: "bot.localhost".into() }
        );
    }

    #[test]
    fn a_private_message_is_answered_privately_and_never_with_an_error() {
        let private = message("dev@conference.localhost/alice", "chat");
        assert_eq!(
            RoomReply::defaults(&fields("chat", None), &private, "bot.localhost"),
            RoomReply { to: "dev@conference.localhost/alice".into(), reply_type: "chat", from: "bot.localhost".into() }
        );
    }
}
