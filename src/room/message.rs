//! What a message from a room means for the webhook: POSTed with the room's fields, POSTed as
//! any other message, or never POSTed. The rules that keep a room bot from talking to itself
//! live here: the bot's own messages come back from the room, and so does history.

use super::facts::MessageFacts;
use super::membership::{occupant_parts as split, Occupant, Rooms};
use super::mention::mentions;
use super::options::GroupchatMode;
pub use crate::conversation::RoomFields;
use crate::jid;
use crate::rich::RequestFields;
use crate::xml::{parse_stanza, ParseLimits};

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
    /// The room's subject.
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
/// What a message from a room means for the webhook.
pub enum Treatment {
    /// POSTed, with these fields.
    Room(RoomFields),
    /// Not from a room the bot knows: POSTed as any other message.
    NotFromARoom,
    /// Never POSTed, for this reason.
    Skip(Skip),
}

/// Where the bot stands in the room a message comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoomView<'a> {
    /// Not a room the bot wants or has been in.
    Unknown,
    /// A room the bot wants, but is not in now.
    NotJoined,
    /// In the room.
    Joined {
        /// The bot's place in it.
        bot: &'a Occupant,
        /// Ids of the bot's recent messages in the room, as the room reflected them: a XEP-0461
        /// reply that names one of them (and no `to`) answers the bot.
        own_message_ids: &'a [String],
    },
}

/// The facts of a message as Prosody serialized it (`xml`), with `body` the text of its
/// `<body/>` ([`crate::stanza::Incoming::body`]): parsed within the limits replies are parsed
/// with ([`ParseLimits::default`]), or `Err` saying which it is beyond. The body is what the sender
/// wrote: without the quote a reply carries for older clients (XEP-0428), which names whoever
/// wrote the message answered, not whom this one speaks to. Linear in `xml` and `body` (see
/// [`crate::rich::strip_ranges`]).
pub fn read_message(xml: &str, body: Option<&str>) -> Result<MessageFacts, String> {
    let element = parse_stanza(xml, ParseLimits::default())?;
    let written = body.map(|body| RequestFields::read(&element, None).body(body).into_owned());
    Ok(MessageFacts::read(&element, written))
}

/// Decides what `message` means, given where the bot stands in its room and the mode.
pub fn classify(message: &MessageFacts, view: RoomView<'_>, mode: GroupchatMode) -> Treatment {
    let groupchat = message.message_type.as_deref() == Some("groupchat");
    if view == RoomView::Unknown {
        return if groupchat { Treatment::Skip(Skip::NotInRoom) } else { Treatment::NotFromARoom };
    }
    if message.message_type.as_deref() == Some("error") {
        return Treatment::Skip(Skip::Error);
    }
    let Some((room, Some(nick))) = split(&message.from) else {
        return Treatment::Skip(Skip::FromTheRoom);
    };
    if !groupchat {
        // A private message from an occupant: POSTed, its sender named.
        let message_type = message.message_type.clone().unwrap_or_else(|| "normal".into());
        return Treatment::Room(RoomFields { message_type, room, nick, mentioned: None });
    }
    let RoomView::Joined { bot, own_message_ids } = view else { return Treatment::Skip(Skip::NotInRoom) };
    if nick == bot.nick {
        return Treatment::Skip(Skip::OwnMessage);
    }
    if message.has_subject && message.body.is_none() {
        return Treatment::Skip(Skip::Subject);
    }
    if message.delayed {
        return Treatment::Skip(Skip::History);
    }
    let Some(body) = &message.body else {
        // A reaction says something without a body; it concerns the bot when it reacts to one
        // of the bot's messages.
        let Some(id) = &message.reactions_id else { return Treatment::Skip(Skip::NoBody) };
        let mentioned = own_message_ids.contains(id);
        if mode == GroupchatMode::Mentions && !mentioned {
            return Treatment::Skip(Skip::NotMentioned);
        }
        return Treatment::Room(RoomFields {
            message_type: "groupchat".into(),
            room,
            nick,
            mentioned: Some(mentioned),
        });
    };
    let replies_to_bot = match &message.reply_to {
        Some(to) => jid::prep(to).is_ok_and(|to| to.to_string() == bot.jid()),
        None => message.reply_id.as_ref().is_some_and(|id| own_message_ids.contains(id)),
    };
    let mentioned = replies_to_bot || mentions(body, &bot.nick);
    if mode == GroupchatMode::Mentions && !mentioned {
        return Treatment::Skip(Skip::NotMentioned);
    }
    Treatment::Room(RoomFields { message_type: "groupchat".into(), room, nick, mentioned: Some(mentioned) })
}

impl Rooms {
    /// [`classify`] with the bot's place in the message's room; the bot's own messages coming
    /// back are noted, for replies to them.
    pub fn classify_message(&mut self, message: &MessageFacts, mode: GroupchatMode) -> Treatment {
        let Some((room, _)) = split(&message.from) else { return classify(message, RoomView::Unknown, mode) };
        let occupant = self.occupant(&room);
        let view = match &occupant {
            Some(bot) => RoomView::Joined { bot, own_message_ids: self.own_message_ids(&room) },
            None if self.knows(&room) => RoomView::NotJoined,
            None => RoomView::Unknown,
        };
        let treatment = classify(message, view, mode);
        if treatment == Treatment::Skip(Skip::OwnMessage) {
            let ids = message.id.iter().chain(&message.stanza_id);
            self.note_own_message(&room, ids.cloned());
        }
        treatment
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOM: &str = "dev@conference.localhost";

    fn bot() -> Occupant {
        Occupant { room: ROOM.into(), nick: "Help Bot".into(), from: "bot.localhost".into() }
    }

    fn said(nick: &str, body: &str) -> MessageFacts {
        MessageFacts {
            from: format!("{ROOM}/{nick}"),
            to: "bot.localhost".into(),
            message_type: Some("groupchat".into()),
            body: Some(body.into()),
            ..Default::default()
        }
    }

    fn fields(nick: &str, mentioned: bool) -> Treatment {
        Treatment::Room(RoomFields {
            message_type: "groupchat".into(),
            room: ROOM.into(),
            nick: nick.into(),
            mentioned: Some(mentioned),
        })
    }

    fn all(message: &MessageFacts) -> Treatment {
        classify(message, RoomView::Joined { bot: &bot(), own_message_ids: &[] }, GroupchatMode::All)
    }

    #[test]
    fn a_room_message_is_posted_with_its_fields() {
        assert_eq!(all(&said("alice", "hello all")), fields("alice", false));
        assert_eq!(all(&said("alice", "help bot: what now?")), fields("alice", true));
        let reply = MessageFacts { reply_to: Some(format!("{ROOM}/Help Bot")), ..said("alice", "thanks") };
        assert_eq!(all(&reply), fields("alice", true), "a XEP-0461 reply to the bot mentions it");
        let reply_to_bob = MessageFacts { reply_to: Some(format!("{ROOM}/bob")), ..said("alice", "thanks") };
        assert_eq!(all(&reply_to_bob), fields("alice", false));
        let own = ["s1".to_string()];
        let view = RoomView::Joined { bot: &bot(), own_message_ids: &own };
        let reply_by_id = MessageFacts { reply_id: Some("s1".into()), ..said("alice", "thanks") };
        assert_eq!(classify(&reply_by_id, view, GroupchatMode::Mentions), fields("alice", true));
        let other_id = MessageFacts { reply_id: Some("s2".into()), ..said("alice", "thanks") };
        assert_eq!(classify(&other_id, view, GroupchatMode::All), fields("alice", false));
    }

    #[test]
    fn a_message_is_read_as_its_sender_wrote_it_or_refused_beyond_the_limits() {
        let quote = "> Help Bot wrote\n";
        let xml = format!(
            "<message from='{ROOM}/alice' type='groupchat'><body>{quote}thanks</body>\
             <reply xmlns='urn:xmpp:reply:0' id='s1'/><fallback xmlns='urn:xmpp:fallback:0' \
             for='urn:xmpp:reply:0'><body start='0' end='{}'/></fallback></message>",
            quote.chars().count()
        );
        let facts = read_message(&xml, Some(&format!("{quote}thanks"))).unwrap();
        assert_eq!((facts.body.as_deref(), facts.reply_id.as_deref()), (Some("thanks"), Some("s1")));
        let deep = format!("<message from='{ROOM}/alice'>{}{}</message>", "<x>".repeat(32), "</x>".repeat(32));
        assert_eq!(read_message(&deep, None).unwrap_err(), "nested deeper than 32 elements");
    }

    #[test]
    fn never_posted() {
        assert_eq!(all(&said("Help Bot", "Did you say hello?")), Treatment::Skip(Skip::OwnMessage));
        let subject = MessageFacts { body: None, has_subject: true, ..said("alice", "") };
        assert_eq!(all(&subject), Treatment::Skip(Skip::Subject));
        let history = MessageFacts { delayed: true, ..said("alice", "old news, help bot") };
        assert_eq!(all(&history), Treatment::Skip(Skip::History));
        let typing = MessageFacts { body: None, ..said("alice", "") };
        assert_eq!(all(&typing), Treatment::Skip(Skip::NoBody));
        let from_room = MessageFacts { from: ROOM.into(), ..said("", "The room is now public") };
        assert_eq!(all(&from_room), Treatment::Skip(Skip::FromTheRoom));
        let error = MessageFacts { message_type: Some("error".into()), ..said("alice", "x") };
        assert_eq!(all(&error), Treatment::Skip(Skip::Error));
        assert_eq!(
            classify(&said("alice", "hi"), RoomView::NotJoined, GroupchatMode::All),
            Treatment::Skip(Skip::NotInRoom)
        );
        assert_eq!(
            classify(&said("alice", "hi"), RoomView::Unknown, GroupchatMode::All),
            Treatment::Skip(Skip::NotInRoom)
        );
    }

    #[test]
    fn a_reaction_is_posted_and_mentions_the_bot_when_it_reacts_to_the_bot() {
        let own = ["s1".to_string()];
        let view = RoomView::Joined { bot: &bot(), own_message_ids: &own };
        let reaction = |id: &str| MessageFacts { body: None, reactions_id: Some(id.into()), ..said("alice", "") };
        assert_eq!(classify(&reaction("s1"), view, GroupchatMode::Mentions), fields("alice", true));
        assert_eq!(classify(&reaction("s2"), view, GroupchatMode::Mentions), Treatment::Skip(Skip::NotMentioned));
        assert_eq!(classify(&reaction("s2"), view, GroupchatMode::All), fields("alice", false));
        let own_reaction = MessageFacts { body: None, reactions_id: Some("s9".into()), ..said("Help Bot", "") };
        assert_eq!(classify(&own_reaction, view, GroupchatMode::All), Treatment::Skip(Skip::OwnMessage));
    }

    #[test]
    fn mentions_mode_posts_only_mentions() {
        let bot = bot();
        let mentions_only = |m: &MessageFacts| {
            classify(m, RoomView::Joined { bot: &bot, own_message_ids: &[] }, GroupchatMode::Mentions)
        };
        assert_eq!(mentions_only(&said("alice", "hello all")), Treatment::Skip(Skip::NotMentioned));
        assert_eq!(mentions_only(&said("alice", "@help bot hello")), fields("alice", true));
        assert_eq!(mentions_only(&said("Help Bot", "help bot here")), Treatment::Skip(Skip::OwnMessage));
    }

    #[test]
    fn private_messages_carry_room_and_nick() {
        let private = MessageFacts { message_type: Some("chat".into()), ..said("alice", "psst") };
        let expected = Treatment::Room(RoomFields {
            message_type: "chat".into(),
            room: ROOM.into(),
            nick: "alice".into(),
            mentioned: None,
        });
        assert_eq!(
            classify(&private, RoomView::Joined { bot: &bot(), own_message_ids: &[] }, GroupchatMode::Mentions),
            expected
        );
        assert_eq!(classify(&private, RoomView::NotJoined, GroupchatMode::All), expected);
        let from_a_user = MessageFacts { from: "alice@localhost/phone".into(), ..private };
        assert_eq!(classify(&from_a_user, RoomView::Unknown, GroupchatMode::All), Treatment::NotFromARoom);
    }

    #[test]
    fn rooms_know_where_the_bot_stands() {
        use crate::room::facts::PresenceFacts;
        use crate::room::options::RoomOptions;
        use std::time::Instant;
        let options = RoomOptions::parse("rest_", "bot.localhost", Some(vec![ROOM.into()]), None, None).unwrap();
        let mut rooms = Rooms::new("bot.localhost", &options, Default::default());
        let now = Instant::now();
        rooms.start(now);
        assert_eq!(rooms.classify_message(&said("alice", "hi"), GroupchatMode::All), Treatment::Skip(Skip::NotInRoom));
        let joined = PresenceFacts { from: format!("{ROOM}/bot"), status_codes: vec![110], ..Default::default() };
        rooms.on_presence(&joined, now).unwrap();
        let echo = MessageFacts { id: Some("m1".into()), stanza_id: Some("s1".into()), ..said("bot", "echo") };
        assert_eq!(rooms.classify_message(&echo, GroupchatMode::All), Treatment::Skip(Skip::OwnMessage));
        let reply = MessageFacts { reply_id: Some("s1".into()), ..said("alice", "nice") };
        assert_eq!(rooms.classify_message(&reply, GroupchatMode::Mentions), fields("alice", true));
        assert_eq!(rooms.classify_message(&said("alice", "hi bot"), GroupchatMode::All), fields("alice", true));
        let elsewhere = MessageFacts { from: "x@conference.localhost/alice".into(), ..said("alice", "hi") };
        assert_eq!(rooms.classify_message(&elsewhere, GroupchatMode::All), Treatment::Skip(Skip::NotInRoom));
    }
}
