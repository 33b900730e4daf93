//! The room options, `<prefix>rooms`, `<prefix>nick` and `<prefix>groupchat`, as validated
//! values. Every refusal names the option of the module that is running (`component_post_…` or
//! `rest_…`), so the operator sees which line of the config to fix when the component loads.

use crate::jid;
use crate::options;

/// Which room messages are POSTed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupchatMode {
    /// Every message said in the room (the default).
    All,
    /// Only messages that mention the bot (Telegram's "privacy mode").
    Mentions,
}

/// A room the configuration asks the bot to be in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfiguredRoom {
    /// The bare room JID, prepared.
    pub room: String,
    /// The nick to join with: the one written after `/`, or the default nick.
    pub nick: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
/// The validated group chat options of a module.
pub struct RoomOptions {
    /// The rooms to join, from `<prefix>rooms`.
    pub rooms: Vec<ConfiguredRoom>,
    /// Used for rooms listed without a nick and for rooms a push joins.
    pub nick: String,
    /// Which room messages are POSTed.
    pub groupchat: GroupchatMode,
}

impl RoomOptions {
    /// Reads the raw values of `<prefix>rooms` (a list of strings, or one string),
    /// `<prefix>nick` and `<prefix>groupchat` from the options table the shim hands over, and
    /// validates them with [`RoomOptions::parse`].
    pub fn from_lua(options: &mlua::Table, prefix: &str, host: &str) -> Result<RoomOptions, String> {
        let name = |suffix: &str| format!("{prefix}{suffix}");
        RoomOptions::parse(
            prefix,
            host,
            options::strings(options, &name("rooms"), "rooms")?,
            options::string(options, &name("nick"))?,
            options::string(options, &name("groupchat"))?,
        )
    }

    /// Validates the raw option values of the module whose options start with `prefix`, for the
    /// component `host` (whose first label is the default nick).
    pub fn parse(
        prefix: &str,
        host: &str,
        rooms: Option<Vec<String>>,
        nick: Option<String>,
        groupchat: Option<String>,
    ) -> Result<RoomOptions, String> {
        let nick_option = format!("{prefix}nick");
        let nick = match nick {
            Some(nick) => {
                valid_nick(&nick).map_err(|why| format!("{nick_option} {nick:?} is not a valid nick: {why}"))?
            }
            None => default_nick(host)
                .map_err(|why| format!("{nick_option} is not set and {why}: set {nick_option} = \"Bot\""))?,
        };
        let groupchat = match groupchat.as_deref() {
            None | Some("all") => GroupchatMode::All,
            Some("mentions") => GroupchatMode::Mentions,
            Some(other) => {
                return Err(format!("{prefix}groupchat is {other:?}: it must be \"all\" or \"mentions\""));
            }
        };
        let rooms_option = format!("{prefix}rooms");
        let mut configured: Vec<ConfiguredRoom> = Vec::new();
        for entry in rooms.unwrap_or_default() {
            let room = configured_room(&entry, &nick, host)
                .map_err(|why| format!("{rooms_option} has {entry:?}, which {why}"))?;
            // Two entries for one room would be two occupants fighting over one membership.
            if configured.iter().any(|c| c.room == room.room) {
                return Err(format!("{rooms_option} lists the room {} twice: keep one entry", room.room));
            }
            configured.push(room);
        }
        Ok(RoomOptions { rooms: configured, nick, groupchat })
    }
}

/// `room@service/Nick` or `room@service`: a bare JID with a node and a domain, and a nick that
/// Prosody accepts as a resource.
fn configured_room(entry: &str, default_nick: &str, host: &str) -> Result<ConfiguredRoom, String> {
    let jid = jid::prep(entry).map_err(|why| format!("is not a room JID ({why})"))?;
    if jid.node.is_none() {
        return Err("has no room name: write room@service/Nick".into());
    }
    // Presence to the component's own host comes straight back to the webhook, never to a room.
    if jid.domain.eq_ignore_ascii_case(host) {
        return Err(format!("is on this component ({host}), not on a chat service"));
    }
    Ok(ConfiguredRoom { room: jid.bare(), nick: jid.resource.unwrap_or_else(|| default_nick.to_owned()) })
}

/// The nick as the room will see it: resourceprep'd, which is what an occupant JID's resource
/// must pass, and not empty.
pub fn valid_nick(nick: &str) -> Result<String, String> {
    if nick.trim().is_empty() {
        return Err("it is empty".into());
    }
    let jid = jid::prep(&format!("room@service.invalid/{nick}"))?;
    jid.resource.ok_or_else(|| "it is empty".into())
}

/// The component host's first label: `bot` for `bot.example.com`.
fn default_nick(host: &str) -> Result<String, String> {
    let label = host.split('.').next().unwrap_or_default();
    valid_nick(label).map_err(|_| format!("the host {host:?} has no first label usable as a nick"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(rooms: &[&str], nick: Option<&str>, mode: Option<&str>) -> Result<RoomOptions, String> {
        RoomOptions::parse(
            "component_post_",
            "bot.localhost",
            Some(rooms.iter().map(|r| r.to_string()).collect()),
            nick.map(Into::into),
            mode.map(Into::into),
        )
    }

    fn room(room: &str, nick: &str) -> ConfiguredRoom {
        ConfiguredRoom { room: room.into(), nick: nick.into() }
    }

    #[test]
    fn defaults_come_from_the_host() {
        let options = RoomOptions::parse("rest_", "helper.example.com", None, None, None).unwrap();
        assert_eq!(options, RoomOptions { rooms: vec![], nick: "helper".into(), groupchat: GroupchatMode::All });
    }

    #[test]
    fn rooms_with_and_without_a_nick() {
        let options = parse(&["Dev@Conference.localhost/Help Bot", "ops@conference.localhost"], None, None).unwrap();
        assert_eq!(
            options.rooms,
            vec![room("dev@conference.localhost", "Help Bot"), room("ops@conference.localhost", "bot")]
        );
        let options = parse(&["ops@conference.localhost"], Some("C++"), Some("mentions")).unwrap();
        assert_eq!(options.rooms, vec![room("ops@conference.localhost", "C++")]);
        assert_eq!(options.groupchat, GroupchatMode::Mentions);
    }

    #[test]
    fn read_from_the_options_table() {
        let lua = mlua::Lua::new();
        let read = |source: &str| {
            let table: mlua::Table = lua.load(source).eval().unwrap();
            RoomOptions::from_lua(&table, "rest_", "bot.localhost")
        };
        let options =
            read("return { rest_rooms = { 'a@conference.localhost/A' }, rest_groupchat = 'mentions' }").unwrap();
        assert_eq!(
            (options.rooms, options.groupchat),
            (vec![room("a@conference.localhost", "A")], GroupchatMode::Mentions)
        );
        let one = read("return { rest_rooms = 'a@conference.localhost', rest_nick = 'Helper' }").unwrap();
        assert_eq!(one.rooms, vec![room("a@conference.localhost", "Helper")]);
        assert_eq!(read("return {}").unwrap().rooms, vec![]);
        for (source, message) in [
            ("rest_rooms = 7", "rest_rooms must be a list of rooms"),
            ("rest_rooms = { true }", "rest_rooms must list rooms as strings, found a boolean"),
            ("rest_nick = {}", "rest_nick must be a string"),
            ("rest_groupchat = 1", "rest_groupchat must be a string"),
        ] {
            let err = read(&format!("return {{ {source} }}")).unwrap_err();
            assert!(err.contains(message), "{source}: {err}");
        }
    }

    #[test]
    fn refusals_name_the_option() {
        assert_eq!(
            parse(&["conference.localhost"], None, None),
            Err("component_post_rooms has \"conference.localhost\", which has no room name: write room@service/Nick"
                .into())
        );
        assert_eq!(
            parse(&["a@conference.localhost", "A@conference.localhost/x"], None, None),
            Err("component_post_rooms lists the room a@conference.localhost twice: keep one entry".into())
        );
        assert_eq!(
            parse(&[], None, Some("some")),
            Err("component_post_groupchat is \"some\": it must be \"all\" or \"mentions\"".into())
        );
        for bad in ["a@", "a@conference.localhost/", "a b@conference.localhost", "a@bot.localhost"] {
            let err = parse(&[bad], None, None).unwrap_err();
            assert!(err.starts_with("component_post_rooms has "), "{bad}: {err}");
        }
        for bad in ["", "  ", "a\u{7}b"] {
            let err = parse(&[], Some(bad), None).unwrap_err();
            assert!(err.starts_with("component_post_nick "), "{bad:?}: {err}");
        }
        let err = RoomOptions::parse("rest_", "localhost", None, Some(" ".into()), None).unwrap_err();
        assert!(err.starts_with("rest_nick "), "{err}");
    }
}
