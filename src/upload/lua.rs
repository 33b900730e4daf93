//! What Lua sees of uploads: `uploads(options, profile, host, stanza_mt)` makes an [`Uploads`]
//! for the module on `host`, or returns `nil, message` when an upload option is invalid. Its
//! methods, all called on Prosody's main thread (`lua/component_http_upload.lib.lua`):
//!
//! | method | returns |
//! |---|---|
//! | `service()` | the configured service's JID, or nil (then the shim discovers one) |
//! | `offer(jid, info)` | whether the disco#info answer `info` of `jid` offers uploads; if so, `jid` is the service from now on |
//! | `begin(stanza, push)` | `false` for a stanza without a file; else `id, iq, seconds` (the slot request to send with `module:send_iq`, and the time left), or `nil, status, why, error` (refused: the HTTP status for a push, the reason, the error stanza for the sender) |
//! | `slot(id, answer)` | the service's answer (or nil and the reason in `fail`): the PUT starts, a task on the uploads' thread |
//! | `fail(id, why)` | ends the upload `id` as failed |
//! | `hold(stanza)` | `true` when the message is held: its conversation is waiting for an upload's message |
//! | `drain()` | the uploads that ended: a list of `{ id, ok, status, why, stanzas, held, level, log }`: `stanzas` to send (the file's message and caption, or the sender's error), then `held`, the messages that waited for it, to send as any other |
//! | `no_service()` | what to log when no upload service is known, naming the option to set |
//! | `fd()`, `close()` | the wake-up descriptor; ending every upload (as `drain`) on unload |
//!
//! An upload's end always comes through `drain`, woken by the descriptor: a PUT's from the
//! uploads' thread ([`Putter`]), a refused slot's or a failure's at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use mlua::{Lua, MultiValue, Table, UserData, UserDataMethods, Value};

use super::put::Putter;
use super::slot::{self, Slot};
use super::{pending, placeholder, File, Limit, PLACEHOLDER_NS};
use crate::config::{Profile, Upload};
use crate::jid::bare;
use crate::ns::{OOB, STANZAS};
use crate::outcome::loggable;
use crate::stanza::{Element, Incoming, Node};
use crate::wakeup::Wakeup;
use crate::xml::{parse_stanza, ParseLimits};

/// The most uploads one module runs at once (each holds its file's bytes until its PUT ends);
/// past it a file is refused (503 for a push), naming the bound. Each begins with a slot request
/// sent with `module:send_iq`, which tracks at most 256 iqs per module and evicts the oldest
/// past that: pushed iqs keep 200 of them (`crate::config::MAX_PUSH_IQS`), the rooms 48, uploads
/// these 8.
pub const MAX_UPLOADS: usize = 8;

/// The most messages held behind uploads at once, in all conversations; past it a message is
/// sent at once (and a warning logged), out of order rather than held without bound.
pub const MAX_HELD: usize = 1000;

/// A conversation: the bare JIDs a message goes from and to.
type Chat = (String, String);

/// How an upload ended: done, or the HTTP status for a push and the reason.
type Outcome = Result<(), (u16, String)>;

/// An upload begun: its id, the slot request to send, the seconds it has.
type Begun = (u64, Element, f64);

/// A file refused: the HTTP status for a push, the reason, and the message it was for.
type Refused = (u16, String, Element);

/// One upload on its way.
struct Job {
    /// The message, with its placeholder.
    message: Element,
    caption: Option<String>,
    /// The file, until the PUT takes it.
    file: Option<File>,
    deadline: Instant,
    chat: Chat,
    /// Messages to the same conversation that came while it ran, in order.
    held: Vec<Element>,
    /// Pushed: its end answers an HTTP request (no error stanza, no warning).
    push: bool,
    /// The GET URL, once the slot is known.
    get: Option<String>,
}

/// Ends written by the PUTs (and by failures on the main thread), for `drain`.
struct Ended {
    list: Vec<(u64, Outcome)>,
    armed: bool,
}

struct Shared {
    ended: Mutex<Ended>,
    wakeup: Wakeup,
}

impl Shared {
    fn ended(&self) -> MutexGuard<'_, Ended> {
        self.ended.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn end(&self, id: u64, result: Outcome) {
        let mut ended = self.ended();
        ended.list.push((id, result));
        if !ended.armed {
            ended.armed = true;
            self.wakeup.signal();
        }
    }
}

/// The uploads of one module.
pub struct Uploads {
    options: Upload,
    profile: Profile,
    host: String,
    timeout: Duration,
    /// The service and its advertised limit, once configured or found.
    service: Option<(String, Option<u64>)>,
    jobs: HashMap<u64, Job>,
    held: usize,
    /// The ended uploads and the descriptor that says so: made for the first file, dropped on
    /// close, so a module that sends no file, or was unloaded, holds no descriptor.
    shared: Option<Arc<Shared>>,
    /// The thread the PUTs run on: started for the first slot, stopped on close (with the PUTs
    /// still under way, whose uploads close ends).
    putter: Option<Putter>,
    stanza_mt: Table,
}

/// `uploads(options, profile, host, stanza_mt)`: see the module's doc.
pub fn new_uploads(
    lua: &Lua,
    (options, profile, host, stanza_mt): (Table, Profile, String, Table),
) -> mlua::Result<MultiValue> {
    let refuse = |why: String| Ok(MultiValue::from_vec(vec![Value::Nil, Value::String(lua.create_string(why)?)]));
    let config = match Upload::from_lua_for(&options, profile) {
        Ok(config) => config,
        Err(why) => return refuse(why),
    };
    let uploads = Uploads {
        service: config.service.clone().map(|jid| (jid, None)),
        timeout: config.timeout,
        options: config,
        profile,
        host,
        jobs: HashMap::new(),
        held: 0,
        shared: None,
        putter: None,
        stanza_mt,
    };
    Ok(MultiValue::from_vec(vec![Value::UserData(lua.create_userdata(uploads)?)]))
}

fn element_of(stanza: &Table) -> Result<Element, String> {
    parse_stanza(&Incoming::from_lua(stanza)?.xml, ParseLimits::default())
}

/// `echo_without_file(stanza, stanza_mt)`: the stanza `POST /rest/echo` shows (see
/// [`super::without_file`]); the same stanza when it carries no file.
pub fn echo_without_file(lua: &Lua, (stanza, stanza_mt): (Table, Table)) -> mlua::Result<Table> {
    let message = element_of(&stanza).map_err(mlua::Error::runtime)?;
    if super::placeholder(&message).is_none() {
        return Ok(stanza);
    }
    super::without_file(message).to_lua(lua, &stanza_mt)
}

/// The conversation a message moves, if it is a message with both addresses.
fn chat_of(message: &Element) -> Option<Chat> {
    (message.name == "message")
        .then(|| Some((bare(message.attr("from")?).to_owned(), bare(message.attr("to")?).to_owned())))
        .flatten()
}

/// The error a failed upload's sender gets: from the bot, about its message.
fn error_for(message: &Element, status: u16, why: &str) -> Option<Element> {
    // Never into a room nor to an occupant (as every other error of the module).
    if message.attr("type") == Some("groupchat") {
        return None;
    }
    let (error_type, condition) = match status {
        413 => ("modify", "not-acceptable"),
        503 => ("cancel", "service-unavailable"),
        504 => ("wait", "remote-server-timeout"),
        _ => ("cancel", "internal-server-error"),
    };
    let error = Element::new("error")
        .with_attr("type", error_type)
        .with_child(Element::new(condition).with_attr("xmlns", STANZAS))
        .with_child(
            Element::new("text").with_attr("xmlns", STANZAS).with_text(&format!("The bot's file was not sent: {why}")),
        );
    let mut reply = Element::new("message").with_attr("type", "error");
    for key in ["to", "from"] {
        if let Some(value) = message.attr(key) {
            reply.set_attr(key, value);
        }
    }
    Some(reply.with_child(error))
}

/// The message a file's placeholder stood for: its body the GET URL, the URL in
/// `jabber:x:oob`, the placeholder gone; and its caption, as `oob_url` sends one.
fn delivered(mut message: Element, caption: Option<String>, url: &str) -> Vec<Element> {
    message.children.retain(|node| !matches!(node, Node::Element(e) if e.attr("xmlns") == Some(PLACEHOLDER_NS)));
    message.children.insert(0, Node::Element(Element::new("body").with_text(url)));
    let oob = Element::new("x").with_attr("xmlns", OOB).with_child(Element::new("url").with_text(url));
    message.children.insert(1, Node::Element(oob));
    let mut out = Vec::with_capacity(2);
    let caption = caption.map(|text| {
        let mut caption = Element::new("message");
        for key in ["type", "to", "from"] {
            if let Some(value) = message.attr(key) {
                caption.set_attr(key, value);
            }
        }
        caption.with_child(Element::new("body").with_text(&text))
    });
    out.push(message);
    out.extend(caption);
    out
}

impl Uploads {
    /// The shared ends and descriptor, made if they are not yet.
    fn shared(&mut self) -> mlua::Result<Arc<Shared>> {
        if let Some(shared) = &self.shared {
            return Ok(Arc::clone(shared));
        }
        let wakeup =
            Wakeup::new().map_err(|e| mlua::Error::runtime(format!("cannot make the uploads' descriptor: {e}")))?;
        let shared = Arc::new(Shared { ended: Mutex::new(Ended { list: Vec::new(), armed: false }), wakeup });
        self.shared = Some(Arc::clone(&shared));
        Ok(shared)
    }

    /// Ends the upload `id` (its end comes through `drain`).
    fn end(&mut self, id: u64, result: Outcome) -> mlua::Result<()> {
        self.shared()?.end(id, result);
        Ok(())
    }

    fn no_service(&self) -> String {
        format!(
            "no upload service is known: load http_file_share on this server, or set {}",
            self.profile.option("upload_service")
        )
    }

    fn limit(&self) -> Limit {
        let service = self.service.as_ref().and_then(|(jid, max)| max.map(|max| (max, jid.as_str())));
        Limit::of(self.options.max_file_size, &self.profile.option("max_file_size"), service)
    }

    /// The JID a slot is requested as: the message's sender when it is on our host (the bot's
    /// JID), else the host itself (a message to a room comes from the bot's occupant JID).
    fn requester(&self, message: &Element) -> String {
        match message.attr("from").map(bare) {
            Some(from) if from.rsplit('@').next() == Some(self.host.as_str()) => from.to_owned(),
            _ => self.host.clone(),
        }
    }

    /// Starts the upload of a message's file; see the module's doc for what it returns.
    fn begin(&mut self, message: Element, push: bool) -> Result<Option<Begun>, Refused> {
        let Some(id) = placeholder(&message) else { return Ok(None) };
        let refused = |status: u16, why: String| (status, why, message.clone());
        let Some(waiting) = pending::take(id) else {
            return Err(refused(500, "the file was dropped before it could be uploaded".into()));
        };
        let Some((service, _)) = self.service.clone() else {
            return Err(refused(503, self.no_service()));
        };
        if let Err(why) = self.limit().check(waiting.file.size()) {
            return Err(refused(413, why));
        }
        if self.jobs.len() >= MAX_UPLOADS {
            return Err(refused(503, format!("{MAX_UPLOADS} files are already being uploaded: send it again later")));
        }
        let iq = slot::request(&waiting.file, &service, &self.requester(&message));
        let chat = chat_of(&message).unwrap_or_default();
        let deadline = Instant::now() + self.timeout;
        let job = Job {
            message,
            caption: waiting.caption,
            file: Some(waiting.file),
            deadline,
            chat,
            held: Vec::new(),
            push,
            get: None,
        };
        self.jobs.insert(id, job);
        Ok(Some((id, iq, self.timeout.as_secs_f64())))
    }

    /// The service answered: start the PUT, or end the upload with why not.
    fn slot(&mut self, id: u64, answer: &Element) -> mlua::Result<()> {
        let shared = self.shared()?;
        let Some(job) = self.jobs.get_mut(&id) else { return Ok(()) };
        let slot: Slot = match slot::slot_of(answer) {
            Ok(slot) => slot,
            Err(why) if slot::forbidden(answer) => {
                // Prosody 13 gives slots to the roles of its users only; a component is let in by name.
                let why = format!(
                    "{why}: the service must let this component upload (Prosody's http_file_share: \
                     http_file_share_access = {{ \"{}\" }})",
                    self.host
                );
                return self.end(id, Err((502, why)));
            }
            Err(why) => return self.end(id, Err((502, why))),
        };
        let Some(file) = job.file.take() else { return Ok(()) };
        job.get = Some(slot.get.clone());
        let deadline = job.deadline;
        if self.putter.is_none() {
            match Putter::start() {
                Ok(putter) => self.putter = Some(putter),
                Err(why) => return self.end(id, Err((500, format!("could not start the upload: {why}")))),
            }
        }
        let Some(putter) = &self.putter else { return Ok(()) };
        // The bytes go with the task, as soon as it ends.
        putter.spawn(slot, file, deadline, move |result| {
            let result = result.map_err(|why| {
                let status = if Instant::now() >= deadline { 504 } else { 502 };
                (status, why)
            });
            shared.end(id, result);
        });
        Ok(())
    }

    fn hold(&mut self, message: Element) -> Result<(), Element> {
        let Some(chat) = chat_of(&message) else { return Err(message) };
        if self.held >= MAX_HELD {
            return Err(message);
        }
        // The newest upload of the conversation: its message goes after the older ones' anyway.
        let Some(job) = self.jobs.values_mut().filter(|job| job.chat == chat).max_by_key(|job| job.deadline) else {
            return Err(message);
        };
        job.held.push(message);
        self.held += 1;
        Ok(())
    }

    /// The stanzas and the outcome of an ended upload.
    fn ended(&mut self, id: u64, result: Outcome) -> Option<EndedUpload> {
        let job = self.jobs.remove(&id)?;
        self.held -= job.held.len();
        let mut stanzas = Vec::new();
        let (status, why, log) = match (result, &job.get) {
            (Ok(()), Some(url)) => {
                stanzas.extend(delivered(job.message.clone(), job.caption.clone(), url));
                (202, None, None)
            }
            (Ok(()), None) => (500, Some("the upload ended without a slot".to_owned()), None),
            (Err((status, why)), _) => {
                if !job.push {
                    stanzas.extend(error_for(&job.message, status, &why));
                }
                (status, Some(why), None)
            }
        };
        let log = log.or_else(|| {
            why.as_ref().map(|why| {
                let level = if job.push { "debug" } else { "warn" };
                let to = job.message.attr("to").unwrap_or("");
                (level, format!("The bot's file to {to} was not sent (HTTP {status} for a push): {why}"))
            })
        });
        Some(EndedUpload { id, ok: why.is_none(), status, why, stanzas, held: job.held, log })
    }

    fn drain(&mut self) -> Vec<EndedUpload> {
        let Some(shared) = &self.shared else { return Vec::new() };
        let list = {
            let mut ended = shared.ended();
            if ended.armed {
                ended.armed = false;
                shared.wakeup.clear();
            }
            std::mem::take(&mut ended.list)
        };
        list.into_iter().filter_map(|(id, result)| self.ended(id, result)).collect()
    }
}

/// An upload that ended, for the shim.
struct EndedUpload {
    id: u64,
    ok: bool,
    status: u16,
    why: Option<String>,
    stanzas: Vec<Element>,
    held: Vec<Element>,
    log: Option<(&'static str, String)>,
}

impl EndedUpload {
    fn to_lua(&self, lua: &Lua, stanza_mt: &Table) -> mlua::Result<Table> {
        let t = lua.create_table()?;
        t.set("id", self.id)?;
        t.set("ok", self.ok)?;
        t.set("status", self.status)?;
        t.set("why", self.why.as_deref().map(loggable).map(|why| why.into_owned()))?;
        let stanzas = lua.create_table_with_capacity(self.stanzas.len(), 0)?;
        for stanza in &self.stanzas {
            stanzas.raw_push(stanza.to_lua(lua, stanza_mt)?)?;
        }
        t.set("stanzas", stanzas)?;
        let held = lua.create_table_with_capacity(self.held.len(), 0)?;
        for stanza in &self.held {
            held.raw_push(stanza.to_lua(lua, stanza_mt)?)?;
        }
        t.set("held", held)?;
        if let Some((level, line)) = &self.log {
            t.set("level", *level)?;
            t.set("log", loggable(line).into_owned())?;
        }
        Ok(t)
    }
}

fn list_to_lua(lua: &Lua, stanza_mt: &Table, ended: Vec<EndedUpload>) -> mlua::Result<Table> {
    let list = lua.create_table_with_capacity(ended.len(), 0)?;
    for upload in &ended {
        list.raw_push(upload.to_lua(lua, stanza_mt)?)?;
    }
    Ok(list)
}

impl UserData for Uploads {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods
            .add_method("service", |_, this, ()| crate::guard("uploads:service", || Ok(this.options.service.clone())));
        methods.add_method("limit", |_, this, ()| crate::guard("uploads:limit", || Ok(this.limit().bytes)));
        methods.add_method("no_service", |_, this, ()| crate::guard("uploads:no_service", || Ok(this.no_service())));
        methods.add_method_mut("offer", |_, this, (jid, info): (String, Table)| {
            crate::guard("uploads:offer", || {
                let Some(max) = element_of(&info).ok().as_ref().and_then(slot::offer) else { return Ok(false) };
                this.service = Some((jid, max));
                Ok(true)
            })
        });
        methods.add_method_mut("begin", |lua, this, (stanza, push): (Table, Option<bool>)| {
            crate::guard("uploads:begin", || {
                // Most messages carry no file: look for the placeholder in the table first.
                let has_placeholder = stanza.sequence_values::<Value>().any(|child| match child {
                    Ok(Value::Table(child)) => child
                        .get::<Option<Table>>("attr")
                        .ok()
                        .flatten()
                        .and_then(|attr| attr.get::<Option<String>>("xmlns").ok().flatten())
                        .is_some_and(|ns| ns == PLACEHOLDER_NS),
                    _ => false,
                });
                if !has_placeholder {
                    return Ok(MultiValue::from_vec(vec![Value::Boolean(false)]));
                }
                let message = element_of(&stanza).map_err(mlua::Error::runtime)?;
                match this.begin(message, push.unwrap_or(false)) {
                    Ok(None) => Ok(MultiValue::from_vec(vec![Value::Boolean(false)])),
                    Ok(Some((id, iq, seconds))) => Ok(MultiValue::from_vec(vec![
                        Value::Integer(id as i64),
                        Value::Table(iq.to_lua(lua, &this.stanza_mt)?),
                        Value::Number(seconds),
                    ])),
                    Err((status, why, message)) => {
                        let error = match error_for(&message, status, &why) {
                            Some(error) => Value::Table(error.to_lua(lua, &this.stanza_mt)?),
                            None => Value::Nil,
                        };
                        Ok(MultiValue::from_vec(vec![
                            Value::Nil,
                            Value::Integer(i64::from(status)),
                            Value::String(lua.create_string(loggable(&why).as_ref())?),
                            error,
                        ]))
                    }
                }
            })
        });
        methods.add_method_mut("slot", |_, this, (id, answer): (u64, Table)| {
            crate::guard("uploads:slot", || match element_of(&answer) {
                Ok(answer) => this.slot(id, &answer),
                Err(why) => this.end(id, Err((502, format!("the slot answer cannot be read: {why}")))),
            })
        });
        methods.add_method_mut("fail", |_, this, (id, status, why): (u64, u16, String)| {
            crate::guard("uploads:fail", || {
                if this.jobs.contains_key(&id) {
                    this.end(id, Err((status, why)))?;
                }
                Ok(())
            })
        });
        methods.add_method_mut("hold", |_, this, stanza: Table| {
            crate::guard("uploads:hold", || {
                if this.jobs.is_empty() || stanza.get::<String>("name")? != "message" {
                    return Ok(false);
                }
                let message = element_of(&stanza).map_err(mlua::Error::runtime)?;
                Ok(this.hold(message).is_ok())
            })
        });
        methods.add_method_mut("drain", |lua, this, ()| {
            crate::guard("uploads:drain", || {
                let ended = this.drain();
                list_to_lua(lua, &this.stanza_mt, ended)
            })
        });
        methods.add_method_mut("fd", |_, this, ()| crate::guard("uploads:fd", || Ok(this.shared()?.wakeup.fd())));
        methods.add_method("pending", |_, this, ()| crate::guard("uploads:pending", || Ok(this.jobs.len())));
        methods.add_method_mut("close", |lua, this, ()| {
            crate::guard("uploads:close", || {
                let ids: Vec<u64> = this.jobs.keys().copied().collect();
                let mut ended = this.drain();
                for id in ids {
                    let why = "the module was unloaded before the file was uploaded".to_owned();
                    ended.extend(this.ended(id, Err((503, why))));
                }
                // PUTs still under way stop with their thread; the descriptor closes with the
                // last reference.
                this.putter = None;
                this.shared = None;
                list_to_lua(lua, &this.stanza_mt, ended)
            })
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delivered_file_is_its_url_twice_then_its_caption() {
        let message = Element::new("message")
            .with_attr("type", "chat")
            .with_attr("to", "alice@localhost")
            .with_attr("from", "bot@bot.localhost")
            .with_child(Element::new("upload").with_attr("xmlns", PLACEHOLDER_NS).with_attr("id", "7"))
            .with_child(Element::new("reply").with_attr("xmlns", crate::ns::REPLY).with_attr("id", "m1"));
        let url = "https://up.example/get/chart.png";
        let sent: Vec<String> = delivered(message, Some("Today".into()), url).iter().map(Element::to_xml).collect();
        assert_eq!(
            sent,
            [
                format!(
                    "<message type='chat' to='alice@localhost' from='bot@bot.localhost'><body>{url}</body>\
                     <x xmlns='jabber:x:oob'><url>{url}</url></x><reply xmlns='urn:xmpp:reply:0' id='m1'/></message>"
                ),
                "<message type='chat' to='alice@localhost' from='bot@bot.localhost'><body>Today</body></message>"
                    .into(),
            ]
        );
    }

    fn uploads(lua: &Lua, service: Option<&str>) -> Uploads {
        let options = lua.create_table().unwrap();
        if let Some(service) = service {
            options.set("component_post_upload_service", service).unwrap();
        }
        options.set("component_post_max_file_size", 100).unwrap();
        let config = Upload::from_lua_for(&options, crate::config::COMPONENT_HTTP).unwrap();
        Uploads {
            service: config.service.clone().map(|jid| (jid, None)),
            timeout: config.timeout,
            options: config,
            profile: crate::config::COMPONENT_HTTP,
            host: "bot.localhost".into(),
            jobs: HashMap::new(),
            held: 0,
            shared: None,
            putter: None,
            stanza_mt: lua.create_table().unwrap(),
        }
    }

    /// A reply carrying a file of `size` bytes, from `from` to alice.
    fn with_file(size: usize, from: &str) -> Element {
        let mut message = Element::new("message").with_attr("type", "chat").with_attr("to", "alice@localhost/phone");
        message.set_attr("from", from);
        message.push_element(Element::new("body").with_text("caption"));
        let file = File::new(vec![7; size], "a.bin", "application/octet-stream", "").unwrap();
        super::super::attach_file(&mut message, file).unwrap();
        message
    }

    fn text(to: &str) -> Element {
        Element::new("message")
            .with_attr("type", "chat")
            .with_attr("to", to)
            .with_attr("from", "echo@bot.localhost")
            .with_child(Element::new("body").with_text("later"))
    }

    #[test]
    fn a_file_asks_for_a_slot_as_the_bot_and_holds_its_conversation_until_it_ends() {
        let lua = Lua::new();
        let mut uploads = uploads(&lua, Some("upload.localhost"));
        let (id, iq, _) = uploads.begin(with_file(10, "echo@bot.localhost/r"), false).unwrap().unwrap();
        assert_eq!(
            iq.to_xml(),
            "<iq type='get' to='upload.localhost' from='echo@bot.localhost'><request xmlns='urn:xmpp:http:upload:0' \
             filename='a.bin' size='10' content-type='application/octet-stream'/></iq>"
        );
        // In a room the bot's occupant JID is not its own: the component asks.
        let (room_id, iq, _) = uploads.begin(with_file(1, "dev@conference.localhost/Helper"), false).unwrap().unwrap();
        assert_eq!(iq.attr("from"), Some("bot.localhost"));
        // Later messages to the same conversation wait; others do not; nor does a non-message.
        assert!(uploads.hold(text("alice@localhost/other")).is_ok(), "the same bare JIDs");
        assert!(uploads.hold(text("bob@localhost")).is_err());
        assert!(uploads.hold(Element::new("presence").with_attr("to", "alice@localhost")).is_err());
        // The service refuses: the sender gets the error, then what waited.
        let refusal =
            "<iq type='error'><error type='cancel'><not-allowed xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>\
                       </error></iq>";
        uploads.slot(id, &parse_stanza(refusal, ParseLimits::default()).unwrap()).unwrap();
        let ended = uploads.drain();
        assert_eq!(ended.len(), 1);
        let ended = &ended[0];
        assert_eq!((ended.ok, ended.status), (false, 502));
        assert_eq!(ended.why.as_deref(), Some("the upload service refused the slot: not-allowed"));
        assert!(ended.stanzas[0].to_xml().starts_with("<message type='error' to='alice@localhost/phone'"));
        assert_eq!(ended.held.len(), 1);
        assert_eq!(uploads.held, 0);
        assert!(uploads.hold(text("alice@localhost")).is_err(), "nothing holds the conversation any more");
        // On close, what is still uploading ends, said.
        let closed = uploads.drain().into_iter().chain(uploads.ended(room_id, Err((503, "unloaded".into()))));
        assert_eq!(closed.map(|ended| ended.status).collect::<Vec<_>>(), [503]);
    }

    #[test]
    fn a_file_is_refused_at_once_without_a_service_or_over_the_limit() {
        let lua = Lua::new();
        let mut none = uploads(&lua, None);
        let (status, why, _) = none.begin(with_file(1, "echo@bot.localhost"), false).unwrap_err();
        assert_eq!(status, 503);
        assert!(why.ends_with("or set component_post_upload_service"), "{why}");
        let mut some = uploads(&lua, Some("upload.localhost"));
        let (status, why, _) = some.begin(with_file(101, "echo@bot.localhost"), true).unwrap_err();
        assert_eq!(
            (status, why.as_str()),
            (413, "the file is 101 bytes, more than the 100 bytes allowed (component_post_max_file_size)")
        );
        // The service's advertised limit, once known, is the smaller.
        some.service = Some(("upload.localhost".into(), Some(50)));
        let (status, why, _) = some.begin(with_file(51, "echo@bot.localhost"), true).unwrap_err();
        assert_eq!(status, 413);
        assert!(why.contains("the max-file-size upload.localhost advertises"), "{why}");
        // A message without a file is not the uploads'.
        assert_eq!(some.begin(text("alice@localhost"), false).unwrap(), None);
        // At most MAX_UPLOADS at once.
        for _ in 0..MAX_UPLOADS {
            some.begin(with_file(1, "echo@bot.localhost"), true).unwrap().unwrap();
        }
        assert_eq!(some.begin(with_file(1, "echo@bot.localhost"), true).unwrap_err().0, 503);
    }

    #[test]
    fn errors_go_to_the_sender_but_never_into_a_room() {
        let chat = Element::new("message").with_attr("type", "chat").with_attr("to", "a@l").with_attr("from", "b@bot");
        assert_eq!(
            error_for(&chat, 413, "too big").unwrap().to_xml(),
            "<message type='error' to='a@l' from='b@bot'><error type='modify'>\
             <not-acceptable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>\
             <text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>The bot&apos;s file was not sent: too big</text>\
             </error></message>"
        );
        let room = Element::new("message").with_attr("type", "groupchat").with_attr("to", "r@muc");
        assert_eq!(error_for(&room, 502, "x"), None);
    }
}
