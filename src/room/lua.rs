//! What Lua sees of the rooms: `rooms(options, profile, host, stanza_mt)` makes a [`LuaRooms`],
//! whose methods take Prosody stanza tables, call [`Rooms`] with `Instant::now()`, and return
//! the [`Action`]s as tables for the shim to perform, each `{ kind = …, … }`:
//!
//! | `kind` | fields | the shim |
//! |---|---|---|
//! | `"send"` | `stanza` | `module:send(stanza)` |
//! | `"self_ping"` | `room`, `id`, `stanza` | `module:send_iq`, the answer to `ping_answer(room, id, answer)` |
//! | `"open_room"` | `room`, `id`, `stanza`, `timeout` | `module:send_iq` with that timeout, an error answer logged; then `open_room_answer(id)` |
//! | `"log"` | `level`, `message` | `module:log` |
//! | `"store"` | | writes `remembered()` to `module:open_store()` |
//! | `"ready"` | `room`, `from` | sends the pushes held for `room` |
//! | `"failed"` | `room`, `status`, `message` | answers the pushes held for `room` |

use std::time::Instant;

use mlua::{Lua, MultiValue, Table, UserData, UserDataMethods, UserDataRefMut, Value};

use super::membership::occupant_parts;
use super::message::{read_message, RoomFields};
use super::{
    Action, PingAnswer, PresenceFacts, PushRoute, RememberedRoom, RoomOptions, Rooms, Skip, Timing, Treatment,
};
use crate::config::Profile;
use crate::conversation::RoomContext;
use crate::jid;
use crate::outcome::{describe, Level};
use crate::stanza::{Element, Incoming};
use crate::xml::{parse_stanza, ParseLimits};

/// The rooms of one component, as a Lua userdata.
pub struct LuaRooms {
    /// The membership state machine.
    pub rooms: Rooms,
    /// The options it was made with (applied again to the state a reload hands over).
    pub options: RoomOptions,
    stanza_mt: Table,
}

/// `rooms(options, profile, host, stanza_mt)`: the rooms of the component `host`, none joined
/// yet, or `nil, message` when a room option is invalid (naming it).
pub fn new_rooms(
    lua: &Lua,
    (options, profile, host, stanza_mt): (Table, Profile, String, Table),
) -> mlua::Result<MultiValue> {
    let options = match RoomOptions::from_lua(&options, profile.prefix, &host) {
        Ok(options) => options,
        Err(why) => return Ok(MultiValue::from_vec(vec![Value::Nil, Value::String(lua.create_string(why)?)])),
    };
    let rooms = Rooms::new(&host, &options, Timing::default());
    let userdata = lua.create_userdata(LuaRooms { rooms, options, stanza_mt })?;
    Ok(MultiValue::from_vec(vec![Value::UserData(userdata)]))
}

/// The owned tree of a Prosody stanza table (serialized, then parsed: only for the stanzas the
/// rooms look into).
fn element_of(stanza: &Table) -> Result<Element, String> {
    let incoming = Incoming::from_lua(stanza)?;
    parse_stanza(&incoming.xml, ParseLimits::default())
}

/// How deep [`stanza_top`] reads: what the membership looks at in a presence or a ping's answer
/// (status codes in `<x xmlns='…muc#user'>`, the condition in `<error>`) is two levels below the
/// stanza.
const MEMBERSHIP_DEPTH: usize = 3;

/// The top `depth` levels of a Prosody stanza table as an owned tree: names, attributes and
/// child elements, no text. Read from the table as Prosody holds it, not serialized and parsed:
/// nothing below those levels is looked at, so a payload nested or sized beyond the parse limits
/// (which a room or any user may send) costs one step per element read and is never an error;
/// what is not a string where Prosody puts one is skipped. The work is bounded by the stanza
/// Prosody accepted (its stanza size limits).
fn stanza_top(stanza: &Table, depth: usize) -> Element {
    let name = match stanza.raw_get::<Value>("name") {
        Ok(Value::String(name)) => name.to_string_lossy(),
        _ => String::new(),
    };
    let mut element = Element::new(&name);
    if let Ok(Value::Table(attr)) = stanza.raw_get::<Value>("attr") {
        for (key, value) in attr.pairs::<Value, Value>().flatten() {
            if let (Value::String(key), Value::String(value)) = (key, value) {
                element.set_attr(&key.to_string_lossy(), &value.to_string_lossy());
            }
        }
    }
    if depth > 1 {
        if let Ok(Value::Table(tags)) = stanza.raw_get::<Value>("tags") {
            for child in tags.sequence_values::<Value>().flatten() {
                if let Value::Table(child) = child {
                    element.push_element(stanza_top(&child, depth - 1));
                }
            }
        }
    }
    element
}

// Kept in a file of their own (this one's other tests are about the message path).
#[cfg(test)]
mod membership_tests;

impl LuaRooms {
    /// Decides whether a message to the component is POSTed, and with which room fields:
    /// `None` posts it (with `incoming.room` set when it comes from a room); `Some(actions)`
    /// does not (the bot's own message reflected, history, the subject, an unmentioned message
    /// in `"mentions"` mode, one from a room that is beyond the parser's limits, a `groupchat`
    /// message from anyone but a room the bot knows…), and the actions say why or react to a
    /// room's error. Nothing of the stanza is read before its sender is found to be a room the
    /// bot knows.
    pub fn classify(&mut self, incoming: &mut Incoming) -> Option<Vec<Action>> {
        if incoming.name == "presence" {
            self.note_occupant_presence(incoming);
            return None;
        }
        if incoming.name != "message" {
            return None;
        }
        let from = incoming.from.as_deref()?;
        let groupchat = incoming.stanza_type.as_deref() == Some("groupchat");
        // The room first, before anything of the stanza is read: whoever sends a message to the
        // component costs the room logic nothing unless it comes from a room the bot knows.
        // Prosody routes prepared JIDs, so the bare part of `from` is the room as it is kept.
        if !self.rooms.knows(jid::bare(from)) {
            // A private message is an ordinary message; a `groupchat` one is from a room the bot
            // is not in (or not a room at all) and never POSTed.
            return groupchat.then(|| vec![skip_log(incoming, Skip::NotInRoom)]);
        }
        // A message from a room the bot knows is a room message whatever its shape: one the
        // rooms cannot read (beyond the parser's limits) is dropped, never POSTed as an ordinary
        // message, whose error would go to the occupant and get the bot kicked (status 333).
        let facts = match read_message(&incoming.xml, incoming.body.as_deref()) {
            Ok(facts) => facts,
            Err(why) => {
                let line = format!(
                    "dropped {}: from a room, but unreadable ({why}); neither posted nor answered",
                    describe(incoming)
                );
                return Some(vec![Action::Log(Level::Info, line)]);
            }
        };
        match self.rooms.classify_message(&facts, self.options.groupchat) {
            Treatment::NotFromARoom => None,
            Treatment::Room(fields) => {
                let bot_from = match self.rooms.occupant(&fields.room) {
                    Some(bot) if !fields.is_private() => bot.from,
                    _ => incoming.to.clone().unwrap_or_default(),
                };
                if !fields.is_private() {
                    // Every occupant sees chat states: only for a message to the bot, and one
                    // with a body (not a reaction).
                    incoming.chat_states = fields.mentioned == Some(true) && incoming.body.is_some();
                }
                incoming.room = Some(Box::new(RoomContext { fields, bot_from }));
                None
            }
            Treatment::Skip(why) => {
                let mut actions = vec![skip_log(incoming, why)];
                if why == Skip::Error {
                    actions.extend(self.rooms.on_error_message(&facts, Instant::now()));
                }
                Some(actions)
            }
        }
    }
}

impl LuaRooms {
    /// A presence of another occupant of a room the bot knows, POSTed: it carries `room` and
    /// `nick`, and no error is ever sent back for it (Prosody's MUC kicks an occupant whose JID
    /// answers a presence with an error, status 333).
    fn note_occupant_presence(&self, incoming: &mut Incoming) {
        let Some(from) = incoming.from.as_deref() else { return };
        let Some((room, Some(nick))) = occupant_parts(from) else { return };
        if !self.rooms.knows(&room) {
            return;
        }
        let fields = RoomFields { message_type: "presence".into(), room, nick, mentioned: None };
        let bot_from = incoming.to.clone().unwrap_or_default();
        incoming.room = Some(Box::new(RoomContext { fields, bot_from }));
    }
}

/// The debug line saying why `incoming` is not POSTed.
fn skip_log(incoming: &Incoming, why: Skip) -> Action {
    Action::Log(Level::Debug, format!("not posting {}: {}", describe(incoming), skip_reason(why)))
}

fn skip_reason(why: Skip) -> &'static str {
    match why {
        Skip::OwnMessage => "the bot's own message, reflected by the room",
        Skip::NotInRoom => "a room message from a room the bot is not in",
        Skip::FromTheRoom => "said by the room itself",
        Skip::Subject => "the room's subject",
        Skip::History => "history (delayed delivery)",
        Skip::NoBody => "a room message without a body",
        Skip::NotMentioned => "it does not mention the bot (groupchat = \"mentions\")",
        Skip::Error => "an error from the room",
    }
}

/// The actions as a Lua array of tables (see the module documentation).
pub fn actions_to_lua(lua: &Lua, stanza_mt: &Table, actions: Vec<Action>) -> mlua::Result<Table> {
    let list = lua.create_table_with_capacity(actions.len(), 0)?;
    for action in actions {
        let t = lua.create_table()?;
        match action {
            Action::Send(stanza) => {
                t.set("kind", "send")?;
                t.set("stanza", stanza.to_lua(lua, stanza_mt)?)?;
            }
            Action::SelfPing { room, id, iq } => {
                t.set("kind", "self_ping")?;
                t.set("room", room)?;
                t.set("id", id)?;
                t.set("stanza", iq.to_lua(lua, stanza_mt)?)?;
            }
            Action::OpenRoom { room, id, iq, timeout } => {
                t.set("kind", "open_room")?;
                t.set("room", room)?;
                t.set("id", id)?;
                t.set("timeout", timeout.as_secs_f64())?;
                t.set("stanza", iq.to_lua(lua, stanza_mt)?)?;
            }
            Action::Log(level, message) => {
                t.set("kind", "log")?;
                t.set("level", level.as_str())?;
                t.set("message", crate::outcome::loggable(&message).as_ref())?;
            }
            Action::StoreRemembered => t.set("kind", "store")?,
            Action::RoomReady { room, from } => {
                t.set("kind", "ready")?;
                t.set("room", room)?;
                t.set("from", from)?;
            }
            Action::RoomFailed { room, failure } => {
                t.set("kind", "failed")?;
                t.set("room", room)?;
                t.set("status", failure.push_status())?;
                t.set("message", failure.to_string())?;
            }
        }
        list.raw_push(t)?;
    }
    Ok(list)
}

impl UserData for LuaRooms {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        // A message to the component that nothing else took (messages are not POSTed): one from
        // a room the bot knows is dropped here, after the core saw it (an error from the room
        // may mean a rejoin), rather than answered with an error that would get the bot kicked.
        // Returns the actions, or nil when it is not from a known room.
        methods.add_method_mut("message", |lua, this, stanza: Table| {
            let from: Option<String> = stanza.get::<Table>("attr")?.get("from")?;
            let known = from.as_deref().is_some_and(|f| this.rooms.knows(jid::bare(f)));
            if !known {
                return Ok(None);
            }
            let mut incoming = Incoming::from_lua(&stanza).map_err(mlua::Error::runtime)?;
            let actions = this.classify(&mut incoming).unwrap_or_else(|| {
                vec![Action::Log(Level::Debug, format!("not posting {}: messages are not posted", describe(&incoming)))]
            });
            actions_to_lua(lua, &this.stanza_mt, actions).map(Some)
        });
        // How many rooms the bot wants or has been in.
        methods.add_method("count", |_, this, ()| Ok(this.rooms.count()));
        // Adds the rooms read back from storage: a list of `{ room, nick, from }`.
        methods.add_method_mut("load_remembered", |lua, this, list: Table| {
            let mut remembered = Vec::new();
            for entry in list.sequence_values::<Table>() {
                let entry = entry?;
                remembered.push(RememberedRoom {
                    room: entry.get::<Option<String>>("room")?.unwrap_or_default(),
                    nick: entry.get::<Option<String>>("nick")?.unwrap_or_default(),
                    from: entry.get::<Option<String>>("from")?.unwrap_or_default(),
                });
            }
            let actions = this.rooms.load_remembered(remembered);
            actions_to_lua(lua, &this.stanza_mt, actions)
        });
        // The rooms to keep in storage, as a list of `{ room, nick, from }`.
        methods.add_method("remembered", |lua, this, ()| {
            let list = lua.create_table()?;
            for r in this.rooms.remembered() {
                let t = lua.create_table()?;
                t.set("room", r.room)?;
                t.set("nick", r.nick)?;
                t.set("from", r.from)?;
                list.raw_push(t)?;
            }
            Ok(list)
        });
        methods.add_method_mut("start", |lua, this, ()| {
            let actions = this.rooms.start(Instant::now());
            actions_to_lua(lua, &this.stanza_mt, actions)
        });
        methods.add_method_mut("tick", |lua, this, ()| {
            let actions = this.rooms.tick(Instant::now());
            actions_to_lua(lua, &this.stanza_mt, actions)
        });
        // Seconds until `tick` has something to do, or nil.
        methods.add_method("next_tick", |_, this, ()| {
            let now = Instant::now();
            Ok(this.rooms.next_tick().map(|at| at.saturating_duration_since(now).as_secs_f64()))
        });
        // A presence to the component: `actions` when it was about the bot's membership
        // (consumed), else nil; and whether it came from a room the bot knows. Never an error,
        // whatever the presence carries: it is read as far as the membership looks (see
        // `stanza_top`), and one from anyone but a room the bot knows is not read at all.
        methods.add_method_mut("presence", |lua, this, stanza: Table| {
            let from = match stanza.raw_get::<Value>("attr") {
                Ok(Value::Table(attr)) => match attr.raw_get::<Value>("from") {
                    Ok(Value::String(from)) => from.to_string_lossy(),
                    _ => String::new(),
                },
                _ => String::new(),
            };
            let known = occupant_parts(&from).is_some_and(|(room, _)| this.rooms.knows(&room));
            if !known {
                return Ok((Value::Nil, false));
            }
            let facts = PresenceFacts::read(&stanza_top(&stanza, MEMBERSHIP_DEPTH));
            let actions = match this.rooms.on_presence(&facts, Instant::now()) {
                Some(actions) => Value::Table(actions_to_lua(lua, &this.stanza_mt, actions)?),
                None => Value::Nil,
            };
            Ok((actions, known))
        });
        // A presence the bot sends (reply or push), checked already: `stanza, actions`, the
        // stanza made a join the room accepts when it joins one.
        methods.add_method_mut("own_presence", |lua, this, stanza: Table| {
            let mut element = element_of(&stanza).map_err(mlua::Error::runtime)?;
            let before = element.clone();
            let actions = this.rooms.on_own_presence(&mut element, Instant::now());
            let stanza = if element == before { stanza } else { element.to_lua(lua, &this.stanza_mt)? };
            Ok((stanza, actions_to_lua(lua, &this.stanza_mt, actions)?))
        });
        // The answer to a self-ping (`nil` for no answer in time).
        methods.add_method_mut("ping_answer", |lua, this, (room, id, answer): (String, String, Option<Table>)| {
            let answer = match answer {
                None => PingAnswer::Timeout,
                Some(stanza) => {
                    let occupant = this.rooms.occupant(&room).map(|o| o.jid()).unwrap_or_default();
                    PingAnswer::read(&stanza_top(&stanza, MEMBERSHIP_DEPTH), &occupant)
                }
            };
            let actions = this.rooms.on_ping_answer(&room, &id, &answer, Instant::now());
            actions_to_lua(lua, &this.stanza_mt, actions)
        });
        // The form that opened a new room (`open_room`) was answered, or failed or timed out.
        methods.add_method_mut("open_room_answer", |lua, this, id: String| {
            let actions = this.rooms.on_open_room_answer(&id, Instant::now());
            actions_to_lua(lua, &this.stanza_mt, actions)
        });
        // A pushed `groupchat` message to `to`: `"send", from` | `"wait", actions` |
        // `nil, status, message`.
        methods.add_method_mut("route_push", |lua, this, (to, from): (String, Option<String>)| {
            let refuse = |status: u16, message: String| -> mlua::Result<MultiValue> {
                Ok(MultiValue::from_vec(vec![
                    Value::Nil,
                    Value::Integer(i64::from(status)),
                    Value::String(lua.create_string(message)?),
                ]))
            };
            match this.rooms.route_push(&to, from.as_deref(), Instant::now()) {
                PushRoute::Send { from } => Ok(MultiValue::from_vec(vec![
                    Value::String(lua.create_string("send")?),
                    Value::String(lua.create_string(from)?),
                ])),
                PushRoute::Wait(actions) => Ok(MultiValue::from_vec(vec![
                    Value::String(lua.create_string("wait")?),
                    Value::Table(actions_to_lua(lua, &this.stanza_mt, actions)?),
                ])),
                PushRoute::Refuse(failure) => refuse(failure.push_status(), format!("{to}: {failure}")),
                PushRoute::NotARoom(why) => refuse(400, why),
                PushRoute::OtherOccupant { joined_as } => {
                    refuse(409, format!("the bot is in {to} as {joined_as}: push from that JID, or without a from"))
                }
            }
        });
        // Reload: continue from the state the old instance hands over, with this one's options.
        methods.add_method_mut("adopt", |lua, this, old: UserDataRefMut<LuaRooms>| {
            this.rooms = old.rooms.clone();
            let options = this.options.clone();
            let actions = this.rooms.reconfigure(&options, Instant::now());
            actions_to_lua(lua, &this.stanza_mt, actions)
        });
        // Unload that is not a reload: leave every room.
        methods.add_method_mut("leave_all", |lua, this, ()| {
            let actions = this.rooms.leave_all();
            actions_to_lua(lua, &this.stanza_mt, actions)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOM: &str = "dev@conference.localhost";

    /// The rooms of `bot.localhost`, in `ROOM` as `bot`, in `"mentions"` mode.
    fn rooms(lua: &Lua) -> LuaRooms {
        let options = RoomOptions::parse(
            "component_post_",
            "bot.localhost",
            Some(vec![ROOM.into()]),
            Some("bot".into()),
            Some("mentions".into()),
        )
        .unwrap();
        let mut rooms = Rooms::new("bot.localhost", &options, Timing::default());
        let now = Instant::now();
        rooms.start(now);
        let joined = PresenceFacts { from: format!("{ROOM}/bot"), status_codes: vec![110], ..Default::default() };
        rooms.on_presence(&joined, now).unwrap();
        LuaRooms { rooms, options, stanza_mt: lua.create_table().unwrap() }
    }

    /// A message mentioning the bot from `from`, with `payload` after its body.
    fn message(from: &str, message_type: &str, payload: &str) -> Incoming {
        let xml = format!(
            "<message from='{from}' to='bot.localhost' type='{message_type}' id='m1'><body>hi bot</body>{payload}</message>"
        );
        Incoming {
            from: Some(from.into()),
            to: Some("bot.localhost".into()),
            xml,
            id: Some("m1".into()),
            body: Some("hi bot".into()),
            ..Incoming::sample("message", Some(message_type))
        }
    }

    /// Payloads one past each of the parser's limits: depth, attributes on one element, elements.
    fn over_the_limits() -> Vec<(&'static str, String)> {
        let limits = ParseLimits::default();
        // The message itself and its body count: 32 more levels make it 33 deep.
        let depth = format!("{}{}", "<x xmlns='urn:t'>".repeat(limits.max_depth), "</x>".repeat(limits.max_depth));
        let attributes: String = (0..=limits.max_attributes).map(|i| format!(" a{i}='v'")).collect();
        let elements = "<x xmlns='urn:t'/>".repeat(limits.max_elements);
        vec![("depth", depth), ("attributes", format!("<x xmlns='urn:t'{attributes}/>")), ("elements", elements)]
    }

    fn log_lines(actions: &[Action]) -> Vec<(Level, String)> {
        actions
            .iter()
            .map(|action| match action {
                Action::Log(level, line) => (*level, line.clone()),
                other => panic!("only log lines expected, got {other:?}"),
            })
            .collect()
    }

    #[test]
    fn a_readable_room_message_is_posted_with_the_rooms_fields() {
        let lua = Lua::new();
        let mut rooms = rooms(&lua);
        let mut said = message(&format!("{ROOM}/alice"), "groupchat", "");
        assert!(rooms.classify(&mut said).is_none(), "posted");
        let room = said.room.expect("with the room's fields");
        assert_eq!((room.fields.nick.as_str(), room.fields.mentioned), ("alice", Some(true)));
    }

    #[test]
    fn a_room_message_over_the_parse_limits_is_dropped_with_a_log_line() {
        let lua = Lua::new();
        let mut rooms = rooms(&lua);
        for (limit, payload) in over_the_limits() {
            for message_type in ["groupchat", "chat", "normal"] {
                let mut said = message(&format!("{ROOM}/alice"), message_type, &payload);
                assert!(parse_stanza(&said.xml, ParseLimits::default()).is_err(), "{limit}: over the limit");
                let actions = rooms.classify(&mut said).unwrap_or_else(|| panic!("{limit} {message_type}: posted"));
                let lines = log_lines(&actions);
                assert_eq!(lines.len(), 1, "{limit} {message_type}: {lines:?}");
                let (level, line) = &lines[0];
                assert_eq!(*level, Level::Info);
                assert!(
                    line.starts_with(&format!(
                        "dropped message from {ROOM}/alice to bot.localhost (id m1): from a room, but unreadable ("
                    )),
                    "{line}"
                );
                assert!(said.room.is_none());
            }
        }
    }

    #[test]
    fn a_groupchat_message_from_an_unknown_jid_is_not_read() {
        let lua = Lua::new();
        let mut rooms = rooms(&lua);
        // A stanza the room parse would refuse: were it read, it would be dropped as unreadable
        // (or, before, POSTed as an ordinary message); it is skipped for its sender alone.
        for (limit, payload) in over_the_limits() {
            for from in ["alice@localhost/phone", "other@conference.localhost/alice", "localhost"] {
                let mut said = message(from, "groupchat", &payload);
                let actions = rooms.classify(&mut said).unwrap_or_else(|| panic!("{limit} from {from}: posted"));
                let lines = log_lines(&actions);
                assert_eq!(lines.len(), 1);
                assert_eq!(lines[0].0, Level::Debug);
                assert!(lines[0].1.ends_with(skip_reason(Skip::NotInRoom)), "{from}: {}", lines[0].1);
                assert!(said.room.is_none());
            }
        }
        // Nor is a private message from anyone but a room the bot knows: an ordinary message.
        let (_, deep) = &over_the_limits()[0];
        let mut private = message("alice@localhost/phone", "chat", deep);
        assert!(rooms.classify(&mut private).is_none() && private.room.is_none());
    }
}
