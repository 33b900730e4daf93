//! What Lua sees: `require "component_http_native"` returns
//!
//! - `new(options, stanza_mt, profile, host)`: a client for the component `host`, or
//!   `nil, message` when an option is invalid. `options` maps config option names to their raw
//!   values; `stanza_mt` is Prosody's stanza metatable, given to every stanza the client builds;
//!   `profile` is `"component_http"` or `"rest"`.
//! - `serialize(stanza)`, `parse(xml, stanza_mt)` and `prep_jid(jid)`: the conversions on their
//!   own, for tests.
//!
//! A client has `submit(stanza)`, `drain()`, `fd()`, `kinds()`, `identity()` and `close()`; see
//! [`Client`].
//! No panic may unwind into Lua: every entry point catches it and raises a Lua error instead.
//!
//! # Layout: the path of a stanza
//!
//! In the order a stanza crosses the files, from Prosody to the webhook and back:
//!
//! 1. `lua/component_http_client.lib.lua` (started by `lua/mod_component_http.lua` and
//!    `lua/mod_rest.lua`, beside the core `lua/component_http.lib.lua`) hooks the stanza on
//!    Prosody's main thread and calls [`Client`]`:submit` (here). Unless iqs are POSTed,
//!    `lua/component_http_identity.lib.lua` answers disco#info itself, with the identity
//!    [`Client`]`:identity` gives; [`shim`] has what the other libraries ask.
//! 2. [`stanza`]: `Incoming::from_lua` reads the stanza table and serializes it, in one pass.
//! 3. [`dispatch`]: `Dispatcher::submit` queues it, in its sender's line, and offers it to the
//!    pool; the main thread returns.
//! 4. [`dispatch::worker`](dispatch): the main loop of a worker thread takes it, has
//!    [`request`] write the body (with the fields of [`rich`]) and [`http`] post it ([`signing`], [`resolve`]) within its
//!    deadline, retrying or holding it during an outage (`dispatch/outage.rs`).
//! 5. [`answer`]: what the webhook's HTTP answer means, and the reply it describes ([`xml`],
//!    [`rich`]), addressed and checked by [`policy`] ([`jid`]).
//! 6. [`outcome`]: what the sender gets (a reply, nothing, or an error), as a `Completion`,
//!    and the XEP-0184 receipt an accepted message owes, sent first (`Shared::answer`).
//!    `dispatch/keeper.rs` settles what waited past its deadline and sends `<composing/>`.
//!    A streamed answer (a `200` of `application/x-ndjson` or `text/event-stream`) is read
//!    piece by piece instead (`dispatch/stream.rs`, [`stream`]; its reads are bounded by
//!    `http/clamp.rs`), and yields a first message, corrections and a final one.
//! 7. [`wakeup`]: a byte wakes Prosody, whose watcher calls `Client:drain`; the completions
//!    become stanza tables (`Element::to_lua`) that the Lua sends, each under its own guard.
//!
//! A push (`POST /rest`, `POST /component_http`) takes a shorter path: the Lua's HTTP handler
//! calls `push`, [`inbound`] parses and checks it ([`policy`]), and the Lua sends it (or
//! `Client:hold` keeps it until a streamed answer to the same conversation ends). [`config`]
//! turns the options into typed values, with the module's profile; [`room`] holds what the bot
//! knows of the group chats it is in; [`avatar`] reads and checks the bot's picture, which the
//! Lua serves in its vCard. A message carrying a file, a reply's or a push's, takes one more step:
//! [`upload`] reads the file, and `uploads(…)` (its Lua object) runs the slot request and the PUT
//! before the message goes out.

pub mod answer;
pub mod avatar;
pub mod config;
pub mod conversation;
pub mod dispatch;
pub mod http;
pub mod inbound;
pub mod jid;
pub mod jsonmap;
pub mod metrics;
pub mod ns;
pub mod options;
pub mod outcome;
pub mod policy;
pub mod presence;
pub mod request;
pub mod resolve;
pub mod rest;
pub mod rich;
pub mod room;
pub mod shim;
pub mod signing;
pub mod stanza;
pub mod stream;
pub mod transport;
pub mod upload;
pub mod url_template;
pub mod wakeup;
pub mod xml;

use std::panic::{catch_unwind, AssertUnwindSafe};

use mlua::{Lua, MultiValue, Table, UserData, UserDataMethods, Value};

use crate::config::Config;
use crate::dispatch::Dispatcher;
use crate::outcome::Completion;
use crate::stanza::Incoming;

/// Runs `f`, turning a panic into a Lua error.
fn guard<T>(what: &str, f: impl FnOnce() -> mlua::Result<T>) -> mlua::Result<T> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        let detail = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Err(mlua::Error::runtime(format!("component_http_native: internal error in {what}: {detail}")))
    })
}

/// The native client of one component, as Lua's userdata: see the methods below.
pub struct Client {
    dispatcher: Option<Dispatcher>,
    stanza_mt: Table,
}

impl Client {
    fn dispatcher(&mut self) -> mlua::Result<&mut Dispatcher> {
        self.dispatcher.as_mut().ok_or_else(|| mlua::Error::runtime("component_http_native: client is closed"))
    }
}

/// Turns completions into `stanzas, logs`: an array of stanza tables to send, and a flat array
/// `{ level1, message1, level2, message2, … }` for `module:log`, or nil when there is nothing to
/// log (the common case: no table to build and collect).
fn to_lua(lua: &Lua, stanza_mt: &Table, completions: Vec<Completion>) -> mlua::Result<(Table, Option<Table>)> {
    let stanzas = lua.create_table_with_capacity(completions.len(), 0)?;
    let mut logs: Option<Table> = None;
    for completion in completions {
        if let Some(element) = completion.send {
            stanzas.raw_push(element.to_lua(lua, stanza_mt)?)?;
        }
        if let Some((level, message)) = completion.log {
            let logs = match &logs {
                Some(logs) => logs,
                None => logs.insert(lua.create_table()?),
            };
            logs.raw_push(level.as_str())?;
            logs.raw_push(outcome::loggable(&message))?;
        }
    }
    Ok((stanzas, logs))
}

impl UserData for Client {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        // Queues a stanza. One the native side cannot read is answered with an error (through
        // `drain`, like every other outcome), so the rule of what may be answered lives once.
        // With the component's `rooms`, a message from a room is POSTed with the room's fields,
        // or not at all: then the actions to perform are returned (see `room::lua`).
        methods.add_method_mut("submit", |lua, this, (stanza, rooms): (Table, Option<mlua::AnyUserData>)| {
            guard("submit", || {
                let stanza_mt = this.stanza_mt.clone();
                let dispatcher = this.dispatcher()?;
                match Incoming::from_lua(&stanza) {
                    Ok(mut incoming) => {
                        if let Some(rooms) = rooms {
                            let mut rooms = rooms.borrow_mut::<room::lua::LuaRooms>()?;
                            if let Some(actions) = rooms.classify(&mut incoming) {
                                return room::lua::actions_to_lua(lua, &stanza_mt, actions).map(Some);
                            }
                        }
                        dispatcher.submit(incoming)
                    }
                    Err(why) => dispatcher.refuse(
                        &Incoming::unreadable(&stanza),
                        outcome::Outcome::Error(outcome::INTERNAL, format!("cannot post it: {why}")),
                    ),
                }
                Ok(None)
            })
        });
        // Returns the finished outcomes as `stanzas, logs`, or nothing at all when none is
        // waiting (cheap enough to call after every submit: no table is built).
        // A third and fourth value, the module's new status type and message, come when the
        // webhook's state changed (an outage began or ended).
        methods.add_method("drain", |lua, this, ()| {
            guard("drain", || {
                let (completions, status) =
                    this.dispatcher.as_ref().map(Dispatcher::drain_with_status).unwrap_or_default();
                if completions.is_empty() {
                    return Ok(MultiValue::new());
                }
                let (stanzas, logs) = to_lua(lua, &this.stanza_mt, completions)?;
                let mut values = vec![Value::Table(stanzas), logs.map_or(Value::Nil, Value::Table)];
                if let Some((level, message)) = status {
                    values.push(Value::String(lua.create_string(level.as_str())?));
                    values.push(Value::String(lua.create_string(outcome::loggable(&message).as_ref())?));
                }
                Ok(MultiValue::from_vec(values))
            })
        });
        // The counters and figures for Prosody's statistics (see `Stats`); read when Prosody
        // collects them, not per stanza.
        // A pushed stanza for a conversation a streamed answer is being written to: "held"
        // (sent after the answer), "full" (refuse the push), or nil (send it now).
        methods.add_method("hold", |_, this, stanza: Table| {
            guard("hold", || {
                let Some(dispatcher) = this.dispatcher.as_ref() else { return Ok(None) };
                let element = || {
                    let xml = Incoming::from_lua(&stanza)?.xml;
                    xml::parse_stanza(&xml, xml::ParseLimits::default())
                };
                Ok(dispatcher.hold(element).map(|held| if held { "held" } else { "full" }))
            })
        });
        methods.add_method("stats", |lua, this, ()| {
            guard("stats", || {
                let t = lua.create_table()?;
                let Some(d) = &this.dispatcher else { return Ok(t) };
                let (stats, figures) = (d.stats(), d.figures());
                let counts = |list: &[(String, u64)]| lua.create_table_from(list.iter().map(|(k, n)| (k.as_str(), *n)));
                t.set("posted", counts(&stats.posted)?)?;
                t.set("outcomes", counts(&stats.outcomes)?)?;
                t.set("responses", counts(&stats.responses)?)?;
                t.set("retries", stats.retries)?;
                t.set("latency_buckets", lua.create_sequence_from(stats.latency_buckets)?)?;
                t.set("latency_sum", stats.latency_sum)?;
                t.set("latency_count", stats.latency_count)?;
                t.set("queued", figures.queued)?;
                t.set("in_flight", figures.in_flight)?;
                t.set("workers", figures.workers)?;
                t.set("endpoint_up", !figures.endpoint_down)?;
                Ok(t)
            })
        });
        methods.add_method("fd", |_, this, ()| guard("fd", || Ok(this.dispatcher.as_ref().map(|d| d.fd()))));
        methods.add_method("kinds", |lua, this, ()| {
            guard("kinds", || match &this.dispatcher {
                Some(d) => lua.create_sequence_from(d.config().stanzas),
                None => lua.create_table(),
            })
        });
        // What disco#info says of the bot (XEP-0030), when the module answers it: a table with
        // `name` (the configured one, or nil for the default the Lua derives from the JID asked)
        // and `chat_states` (whether the module sends them).
        methods.add_method("identity", |lua, this, ()| {
            guard("identity", || {
                let t = lua.create_table()?;
                if let Some(d) = &this.dispatcher {
                    let config = d.config();
                    t.set("name", config.name)?;
                    t.set("chat_states", config.chat_states)?;
                }
                Ok(t)
            })
        });
        // Stanzas accepted and not answered yet.
        methods.add_method("pending", |_, this, ()| {
            guard("pending", || Ok(this.dispatcher.as_ref().map_or(0, |d| d.pending())))
        });
        // On reload: takes over the old instance's pool — its queue, its stanzas in flight and
        // its connections — applying this client's configuration to it, so nothing pending is
        // lost and order per sender holds. This client's own (idle) pool is closed; what its
        // close answers is returned as `stanzas, logs`, like `drain`.
        methods.add_method_mut("adopt", |lua, this, mut old: mlua::UserDataRefMut<Client>| {
            guard("adopt", || {
                let config = this.dispatcher()?.config();
                let Some(mut adopted) = old.dispatcher.take() else {
                    return to_lua(lua, &this.stanza_mt, Vec::new());
                };
                if let Err(why) = adopted.reconfigure(config) {
                    // Keep our own pool; the old one is closed and its stanzas answered.
                    let mut completions = adopted.close();
                    completions.push(Completion {
                        send: None,
                        log: Some((outcome::Level::Error, format!("could not take over the old pool: {why}"))),
                    });
                    return to_lua(lua, &this.stanza_mt, completions);
                }
                let mut own = std::mem::replace(this.dispatcher()?, adopted);
                to_lua(lua, &this.stanza_mt, own.close())
            })
        });
        // mod_rest's OPTIONS probe: the callback's Accept picked `format` ("json" or "xml"), which
        // the stanzas from now on are POSTed in (those queued too, as their body is made when
        // they are posted). Returns whether it changed.
        methods.add_method_mut("set_format", |_, this, format: String| {
            guard("set_format", || {
                let format = match format.as_str() {
                    "json" => config::Format::Json,
                    "xml" => config::Format::Xml,
                    other => return Err(mlua::Error::runtime(format!("no callback format {other:?}"))),
                };
                let dispatcher = this.dispatcher()?;
                let mut config = dispatcher.config();
                if config.profile.format == format {
                    return Ok(false);
                }
                config.profile.format = format;
                dispatcher.reconfigure(config).map_err(mlua::Error::runtime)?;
                Ok(true)
            })
        });
        // Stops the workers without waiting for them. Returns `stanzas, logs` like `drain`:
        // the answers to everything still pending. Safe to call twice.
        methods.add_method_mut("close", |lua, this, ()| {
            guard("close", || {
                let completions = this.dispatcher.take().map(|mut d| d.close()).unwrap_or_default();
                to_lua(lua, &this.stanza_mt, completions)
            })
        });
    }
}

/// `component_http` (the default) or `rest`.
fn profile(name: Option<String>) -> mlua::Result<config::Profile> {
    let name = name.unwrap_or_else(|| "component_http".into());
    config::Profile::by_name(&name).ok_or_else(|| mlua::Error::runtime(format!("unknown module profile {name:?}")))
}

/// The options the module of `profile` reads.
fn option_names(lua: &Lua, name: Option<String>) -> mlua::Result<Table> {
    guard("option_names", || lua.create_sequence_from(profile(name)?.option_names()))
}

/// `rooms(options, profile, host, stanza_mt)`: the group chat rooms of the component `host`
/// (see [`room::lua`]), or `nil, message` when a room option is invalid.
fn rooms(
    lua: &Lua,
    (options, name, host, stanza_mt): (Table, Option<String>, String, Table),
) -> mlua::Result<MultiValue> {
    guard("rooms", || room::lua::new_rooms(lua, (options, profile(name)?, host, stanza_mt)))
}

/// `push_options(options, profile)`: the push endpoint's validated options as a table
/// (`credentials`, or nil when the endpoint is off; `iq_timeout` in seconds; `max_size`;
/// `max_iqs`; `names`, each option's full name for messages), or `nil, message` when one is
/// invalid. Read with the others, so one place validates every option.
fn push_options(lua: &Lua, (options, name): (Table, Option<String>)) -> mlua::Result<MultiValue> {
    guard("push_options", || {
        let profile = profile(name)?;
        let push = match config::Push::from_lua_for(&options, profile) {
            Ok(push) => push,
            Err(why) => return Ok(MultiValue::from_vec(vec![Value::Nil, Value::String(lua.create_string(why)?)])),
        };
        let t = lua.create_table()?;
        t.set("credentials", push.credentials)?;
        t.set("iq_timeout", push.iq_timeout.as_secs_f64())?;
        t.set("max_size", push.max_size)?;
        t.set("max_iqs", push.max_iqs)?;
        let names = lua.create_table()?;
        for (key, what) in [
            ("credentials", "credentials"),
            ("iq_timeout", "iq_timeout"),
            ("max_size", "max_push_size"),
            ("max_iqs", "max_push_iqs"),
            ("queue_size", "queue_size"),
        ] {
            names.set(key, profile.push_option(what))?;
        }
        t.set("names", names)?;
        Ok(MultiValue::from_vec(vec![Value::Table(t)]))
    })
}

/// `avatar(options, profile)`: the bot's avatar as a table (`type`, the MIME type; `base64`,
/// the file in base64; `sha1`, its hash in hex; `width`, `height`, `size`), `false` when the
/// avatar option is unset, or `nil, message` when its file cannot be served (see [`avatar`]).
fn avatar(lua: &Lua, (options, name): (Table, Option<String>)) -> mlua::Result<MultiValue> {
    guard("avatar", || {
        let avatar = match avatar::Avatar::from_options(&options, profile(name)?) {
            Ok(Some(avatar)) => avatar,
            Ok(None) => return Ok(MultiValue::from_vec(vec![Value::Boolean(false)])),
            Err(why) => return Ok(MultiValue::from_vec(vec![Value::Nil, Value::String(lua.create_string(why)?)])),
        };
        let t = lua.create_table()?;
        t.set("type", avatar.mime_type)?;
        t.set("base64", avatar.base64())?;
        t.set("sha1", avatar.sha1.as_str())?;
        t.set("width", avatar.width)?;
        t.set("height", avatar.height)?;
        t.set("size", avatar.data.len())?;
        Ok(MultiValue::from_vec(vec![Value::Table(t)]))
    })
}

fn new_client(
    lua: &Lua,
    (options, stanza_mt, name, host): (Table, Table, Option<String>, Option<String>),
) -> mlua::Result<MultiValue> {
    guard("new", || {
        let refuse = |why: String| Ok(MultiValue::from_vec(vec![Value::Nil, Value::String(lua.create_string(why)?)]));
        let host =
            host.ok_or_else(|| mlua::Error::runtime("new(options, stanza_mt, profile, host): host is required"))?;
        let mut config = match Config::from_lua_for(&options, profile(name)?) {
            Ok(config) => config,
            Err(why) => return refuse(why),
        };
        config.host = host;
        let dispatcher = match Dispatcher::new(config) {
            Ok(d) => d,
            Err(why) => return refuse(why),
        };
        let client = lua.create_userdata(Client { dispatcher: Some(dispatcher), stanza_mt })?;
        Ok(MultiValue::from_vec(vec![Value::UserData(client)]))
    })
}

/// `uploads(options, profile, host, stanza_mt)`: the file uploads of the module on `host` (see
/// [`upload::lua`]), or `nil, message` when an upload option is invalid.
fn uploads(
    lua: &Lua,
    (options, name, host, stanza_mt): (Table, Option<String>, String, Table),
) -> mlua::Result<MultiValue> {
    guard("uploads", || upload::lua::new_uploads(lua, (options, profile(name)?, host, stanza_mt)))
}

/// `push(body, content_type, host, accept_json, max_size, stanza_mt, profile)`: the stanza to
/// route (and, fourth, an array of the messages to route right after it, such as a file's
/// caption), or `nil, status, message` when the push is refused (see `inbound`). JSON is read in
/// the field names of the module `profile` names (component_http's when nil).
fn push(
    lua: &Lua,
    (body, content_type, host, accept_json, max_size, stanza_mt, name): (
        mlua::String,
        Option<String>,
        String,
        bool,
        usize,
        Table,
        Option<String>,
    ),
) -> mlua::Result<MultiValue> {
    guard("push", || {
        let profile_named = profile(name)?;
        let json = accept_json.then(|| jsonmap::Profile::of(&profile_named));
        let pushed = inbound::stanza_from_push(&body.as_bytes(), content_type.as_deref(), &host, json, max_size);
        shim::pushed_values(lua, pushed, &stanza_mt)
    })
}

/// `push_answer_format(content_type, accept)`: `"json"` or `"xml"`, what a push to an endpoint
/// that speaks both is answered in (see [`inbound::answer_format`]).
fn push_answer_format(_: &Lua, (content_type, accept): (Option<String>, Option<String>)) -> mlua::Result<&'static str> {
    guard("push_answer_format", || {
        Ok(match inbound::answer_format(content_type.as_deref(), accept.as_deref()) {
            config::Format::Json => "json",
            config::Format::Xml => "xml",
        })
    })
}

/// Compares an `Authorization` header with the configured credentials in constant time. An
/// empty header (Prosody's value for a bare `Authorization:`) or empty credentials never match.
fn same_secret(_: &Lua, (given, expected): (mlua::String, mlua::String)) -> mlua::Result<bool> {
    guard("same_secret", || {
        let (given, expected) = (given.as_bytes(), expected.as_bytes());
        Ok(!given.is_empty() && !expected.is_empty() && inbound::same_secret(&given, &expected))
    })
}

/// `request_json(stanza, profile)`: a stanza in the shape of a webhook request (`to`, `from`,
/// `kind`, `stanza`, `body`, and the mapping's fields in the names of the module `profile` names,
/// component_http's when nil): how a push is answered in JSON.
fn request_json(lua: &Lua, (stanza, name): (Table, Option<String>)) -> mlua::Result<mlua::String> {
    guard("request_json", || {
        let profile = jsonmap::Profile::of(&profile(name)?);
        let incoming = Incoming::from_lua(&stanza).map_err(mlua::Error::runtime)?;
        lua.create_string(request::encode_as(&incoming, profile))
    })
}

/// A JID prepared by Prosody's rules (`util.jid.prep`), or nil: for tests that compare the two.
fn prep_jid(_: &Lua, text: String) -> mlua::Result<Option<String>> {
    guard("prep_jid", || Ok(jid::prep(&text).ok().map(|j| j.to_string())))
}

fn serialize(_: &Lua, stanza: Table) -> mlua::Result<String> {
    guard("serialize", || Incoming::from_lua(&stanza).map(|i| i.xml).map_err(mlua::Error::runtime))
}

fn parse(lua: &Lua, (text, stanza_mt): (String, Table)) -> mlua::Result<MultiValue> {
    guard("parse", || match xml::parse_stanza(&text, xml::ParseLimits::default()) {
        Ok(element) => Ok(MultiValue::from_vec(vec![Value::Table(element.to_lua(lua, &stanza_mt)?)])),
        Err(why) => Ok(MultiValue::from_vec(vec![Value::Nil, Value::String(lua.create_string(why)?)])),
    })
}

/// The table `require "component_http_native"` returns.
pub fn exports(lua: &Lua) -> mlua::Result<Table> {
    let exports = lua.create_table()?;
    exports.set("new", lua.create_function(new_client)?)?;
    exports.set("serialize", lua.create_function(serialize)?)?;
    exports.set("parse", lua.create_function(parse)?)?;
    exports.set("prep_jid", lua.create_function(prep_jid)?)?;
    exports.set("option_names", lua.create_function(option_names)?)?;
    exports.set("push_options", lua.create_function(push_options)?)?;
    exports.set("avatar", lua.create_function(avatar)?)?;
    exports.set("rooms", lua.create_function(rooms)?)?;
    exports.set("uploads", lua.create_function(uploads)?)?;
    exports.set(
        "echo_without_file",
        lua.create_function(|lua, args| guard("echo_without_file", || upload::lua::echo_without_file(lua, args)))?,
    )?;
    exports.set("push", lua.create_function(push)?)?;
    exports.set("push_answer_format", lua.create_function(push_answer_format)?)?;
    exports.set("same_secret", lua.create_function(same_secret)?)?;
    exports.set("request_json", lua.create_function(request_json)?)?;
    exports.set("latency_buckets", lua.create_sequence_from(dispatch::LATENCY_BUCKETS)?)?;
    exports.set("version", env!("CARGO_PKG_VERSION"))?;
    shim::register(lua, &exports)?;
    Ok(exports)
}

#[cfg(feature = "module")]
#[mlua::lua_module]
fn component_http_native(lua: &Lua) -> mlua::Result<Table> {
    exports(lua)
}
