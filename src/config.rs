//! The module's options as typed, validated values.
//!
//! The shim hands over the raw values from Prosody's config under their config names; every
//! value that cannot be used is refused here with a message that names the option, so the
//! operator sees it when the component loads rather than when the first stanza arrives.

use std::time::Duration;

use base64::Engine as _;
use mlua::{Table, Value};

use crate::options::{boolean, integer, number, seconds, seconds_or_zero, string};

/// The options of one component, typed and validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The webhook URL without any `user:pass@`.
    pub url: String,
    /// `Basic …` header value built from the URL's userinfo, as Prosody's HTTP client does.
    pub authorization: Option<String>,
    /// Stanza kinds that are POSTed: a subset of message, presence, iq.
    pub stanzas: Vec<String>,
    /// Requests in flight at once (a task and a connection each, no thread); workers start on
    /// demand up to this.
    pub max_in_flight: usize,
    /// Workers (and their kept-alive connections) kept when idle.
    pub warm_workers: usize,
    /// How long a worker beyond the warm set idles before it exits.
    pub idle_timeout: Duration,
    /// Stanzas accepted and not yet posted, at most; beyond it senders get `wait/resource-constraint`.
    pub queue_size: usize,
    /// How long one attempt may take to connect.
    pub connect_timeout: Duration,
    /// Deadline for the whole delivery of one stanza, retries included.
    pub timeout: Duration,
    /// How long a stanza is held and retried while the webhook is unreachable (connection
    /// failures, 502, 503, 504), counted from when it first found it so; never past `timeout`.
    pub retry_window: Duration,
    /// At most this many retries per stanza, when set; otherwise only the window limits them.
    pub retries: Option<u32>,
    /// At most one stanza in flight per (sender, recipient) pair.
    pub ordered: bool,
    /// The largest reply body read, in bytes.
    pub max_reply_size: u64,
    /// HMAC key for signing requests.
    pub secret: Option<String>,
    /// Extra request headers, in a stable order.
    pub headers: Vec<(String, String)>,
    /// A PEM file of CA certificates trusted in addition to the system's.
    pub ca_file: Option<String>,
    /// Send XEP-0085 chat states to senders that support them: `<composing/>` when the
    /// webhook has not answered a chat message within `chat_state_delay`, `<active/>` after.
    pub chat_states: bool,
    /// How long the webhook may think before `<composing/>` is sent.
    pub chat_state_delay: Duration,
    /// The bot's name in its disco#info identity (XEP-0030); when unset, the local part of the
    /// JID asked, or the host.
    pub name: Option<String>,
    /// Which module these options belong to: its contract (JSON or XML) and the prefix every
    /// message that names an option uses (`component_post_timeout`, `rest_timeout`).
    pub profile: Profile,
    /// The component's host, as Prosody loaded the module on it: replies may only come from it
    /// (or a JID on it) and may not go to it. For mod_rest on a VirtualHost, `@host`: replies
    /// come from the host itself only (see [`crate::policy::check`]).
    pub host: String,
    /// How a streamed answer is shown (`<prefix>stream_interval`, `…stream_max_corrections`,
    /// `…stream_timeout`; see [`crate::stream`]).
    pub stream: crate::stream::StreamOptions,
}

/// The stanza kinds that can be POSTed.
pub const KINDS: [&str; 3] = ["message", "presence", "iq"];

/// Upper bound of `component_post_max_in_flight`: a connection (a file descriptor) each.
const MAX_IN_FLIGHT: i64 = 10_000;

/// How requests and answers are written: component_http's JSON contract, or mod_rest's XML.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// component_http: JSON requests and replies.
    Json,
    /// mod_rest: the stanza itself, as XML, both ways.
    Xml,
}

/// Which module's options these are: the same options under another prefix, read once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Profile {
    /// What every option name starts with (`component_post_`, `rest_`).
    pub prefix: &'static str,
    /// The option naming the URL stanzas are POSTed to.
    pub url: &'static str,
    /// The contract of requests and replies. In a [`Config`], mod_rest's is JSON when
    /// `callback_content_type` says so ([`Config::from_lua_for`] sets it).
    pub format: Format,
    /// The stanza kinds POSTed when the module's stanzas option is not set.
    pub default_stanzas: &'static [&'static str],
    /// The option that chooses the contract of requests and replies, for a module that has one
    /// (mod_rest's `rest_callback_content_type`, the community module's name).
    pub callback_content_type: Option<&'static str>,
}

/// mod_component_http's options and JSON contract.
pub const COMPONENT_HTTP: Profile = Profile {
    prefix: "component_post_",
    url: "component_post_url",
    format: Format::Json,
    default_stanzas: &["message"],
    callback_content_type: None,
};
/// mod_rest's options and XML contract.
pub const REST: Profile = Profile {
    prefix: "rest_",
    url: "rest_callback_url",
    format: Format::Xml,
    default_stanzas: &["message", "presence", "iq"],
    callback_content_type: Some("rest_callback_content_type"),
};

/// Every option a module reads, after its prefix; the shim asks for the full names instead of
/// keeping its own list.
const SUFFIXES: [&str; 22] = [
    "stanzas",
    "max_in_flight",
    "workers",
    "warm_workers",
    "idle_timeout",
    "queue_size",
    "connect_timeout",
    "timeout",
    "retry_window",
    "retries",
    "max_reply_size",
    "ordered",
    "secret",
    "headers",
    "ca_file",
    "chat_states",
    "chat_state_delay",
    "name",
    "stream_interval",
    "stream_max_corrections",
    "stream_timeout",
    "avatar",
];

impl Default for Profile {
    /// component_http's: the module this library is named after.
    fn default() -> Self {
        COMPONENT_HTTP
    }
}

impl Profile {
    /// The profile of `module.name`'s native side: `component_http` or `rest`.
    pub fn by_name(name: &str) -> Option<Profile> {
        match name {
            "component_http" => Some(COMPONENT_HTTP),
            "rest" => Some(REST),
            _ => None,
        }
    }

    /// The full name of one of this module's options: `option("timeout")` is
    /// `component_post_timeout` or `rest_timeout`. Every message naming an option builds the
    /// name here, so a mod_rest operator reads the names of mod_rest's options.
    pub fn option(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.prefix)
    }

    /// The full names of the options this module reads.
    pub fn option_names(&self) -> Vec<String> {
        let mut names = vec![self.url.to_owned()];
        if *self == COMPONENT_HTTP {
            names.push("post_stanza_types".to_owned());
        }
        names.extend(SUFFIXES.iter().map(|suffix| self.option(suffix)));
        names.extend(PUSH_OPTIONS.iter().map(|&what| self.push_option(what)));
        names.extend(ROOM_OPTIONS.iter().map(|suffix| self.option(suffix)));
        names.extend(UPLOAD_OPTIONS.iter().map(|suffix| self.option(suffix)));
        names.extend(self.callback_content_type.map(str::to_owned));
        if self.prefix == REST.prefix {
            names.extend(REST_OPTIONS.iter().map(|&name| name.to_owned()));
        }
        names
    }

    /// The full name of a push endpoint option: `component_post_push_credentials` and
    /// `component_post_push_iq_timeout`, but `rest_credentials` and `rest_iq_timeout` (the names
    /// the community mod_rest reads); `…max_push_size` and `…max_push_iqs` for both.
    pub fn push_option(&self, what: &str) -> String {
        match what {
            "credentials" | "iq_timeout" if *self == COMPONENT_HTTP => self.option(&format!("push_{what}")),
            _ => self.option(what),
        }
    }
}

/// The group chat options, after their prefix: validated by [`crate::room::RoomOptions`].
pub const ROOM_OPTIONS: [&str; 3] = ["rooms", "nick", "groupchat"];

/// The file upload options, after their prefix: validated by [`Upload::from_lua_for`].
pub const UPLOAD_OPTIONS: [&str; 2] = ["max_file_size", "upload_service"];

/// The largest `<prefix>max_file_size` taken: a file is held in memory while it uploads.
pub const MAX_FILE_SIZE: i64 = 1 << 30;

/// The largest file the module uploads unless `<prefix>max_file_size` says otherwise: Prosody's
/// `http_file_share_size_limit` default, so the two agree out of the box.
pub const DEFAULT_MAX_FILE_SIZE: u64 = 10 * 1024 * 1024;

/// How files a bot sends are uploaded (see `crate::upload`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    /// The largest file uploaded, in bytes (`<prefix>max_file_size`); the upload service's own
    /// advertised limit applies too, when smaller.
    pub max_file_size: u64,
    /// The upload service's JID (`<prefix>upload_service`); when unset, the service is found by
    /// service discovery on the component's parent host.
    pub service: Option<String>,
    /// How long an upload may take, slot request and PUT together: the module's `<prefix>timeout`,
    /// the deadline of a stanza.
    pub timeout: Duration,
}

impl Upload {
    /// The upload options of the module `profile` describes, from their raw values.
    pub fn from_lua_for(options: &Table, profile: Profile) -> Result<Upload, String> {
        let max_file_size = integer(options, &profile.option("max_file_size"), 1, MAX_FILE_SIZE)?
            .map_or(DEFAULT_MAX_FILE_SIZE, |n| n as u64);
        let name = profile.option("upload_service");
        let service = match string(options, &name)? {
            None => None,
            Some(given) => Some(crate::jid::prep(&given).map(|jid| jid.to_string()).map_err(|why| {
                format!("{name} is {given:?}, not a valid JID ({why}): set it to the upload service's JID, such as \"upload.example.org\"")
            })?),
        };
        let timeout = seconds(options, &profile.option("timeout"))?.unwrap_or(Duration::from_secs(30));
        Ok(Upload { max_file_size, service, timeout })
    }
}

/// The push endpoint's options, after their prefix (see [`Profile::push_option`]).
const PUSH_OPTIONS: [&str; 4] = ["credentials", "iq_timeout", "max_push_size", "max_push_iqs"];

/// The most pushed iqs that may wait for their answers at once. Prosody's `module:send_iq`
/// tracks at most 256 per module and rejects the oldest beyond that, long before its timeout;
/// the rooms keep their own share of those 256 (`crate::room::membership::ROOM_IQS`, 48), so
/// neither evicts the other's iqs.
pub const MAX_PUSH_IQS: i64 = 200;

/// The push endpoint's options (mod_rest's `POST /rest`, component_http's push), validated with
/// the others; the endpoint is offered only when `credentials` is set.
#[derive(Debug, Clone, PartialEq)]
pub struct Push {
    /// The whole `Authorization` header value a client must send: never empty.
    pub credentials: Option<String>,
    /// How long a pushed iq waits for its answer.
    pub iq_timeout: Duration,
    /// The largest push body, in bytes.
    pub max_size: usize,
    /// Pushed iqs waiting for their answers at once; beyond that a push iq is refused (503).
    pub max_iqs: usize,
}

impl Push {
    /// The push options of the module `profile` describes, from the raw values of its options.
    pub fn from_lua_for(options: &Table, profile: Profile) -> Result<Push, String> {
        let n = |what: &str| profile.push_option(what);
        let credentials = string(options, &n("credentials"))?;
        if let Some(given) = &credentials {
            let name = n("credentials");
            if given.trim().is_empty() {
                return Err(format!(
                    "{name} is empty, which would let anyone push: set it to the whole Authorization header \
                     clients must send, e.g. {name} = \"Bearer <a long random token>\", or remove it"
                ));
            }
            if given.trim() != given || given.chars().any(char::is_control) {
                return Err(format!(
                    "{name} starts or ends with a space or contains a control character: \
                     no Authorization header could match it"
                ));
            }
        }
        // The community mod_rest waits two minutes for an iq's answer; component_http's bots 30 s.
        let iq_timeout = Duration::from_secs(if profile.prefix == REST.prefix { 120 } else { 30 });
        let mut push = Push { credentials, iq_timeout, max_size: 1024 * 1024, max_iqs: 100 };
        if let Some(d) = seconds(options, &n("iq_timeout"))? {
            push.iq_timeout = d;
        }
        if let Some(size) = integer(options, &n("max_push_size"), 1, 1 << 30)? {
            push.max_size = size as usize;
        }
        if let Some(count) = integer(options, &n("max_push_iqs"), 1, MAX_PUSH_IQS)? {
            push.max_iqs = count as usize;
        }
        Ok(push)
    }
}

/// mod_rest's options of its own, under the current community module's names: where the callback
/// hooks, how `POST /rest` authenticates, its size limit and the bound of an iq's wait.
const REST_OPTIONS: [&str; 8] = [
    "rest_callback_events",
    "rest_auth_mechanisms",
    "rest_stanza_size_limit",
    "rest_iq_max_timeout",
    // Prosody's own option: the password of `Basic <component JID>:<component_secret>`.
    "component_secret",
    // Read only to refuse it on a VirtualHost (see [`Rest::from_lua`]).
    "rest_rooms",
    // Requests without credentials on an anonymous VirtualHost, each as a new account.
    "anonymous_rest",
    // Prosody's own option: `anonymous_rest` is honoured only where it is "anonymous".
    "authentication",
];

/// The addresses a stanza's `to` can take on the host, as Prosody names its events
/// (`message/host`, `message/bare`, `message/full`).
pub const EVENTS: [&str; 3] = ["host", "bare", "full"];

/// The authentication schemes `POST /rest` knows, as `rest_auth_mechanisms` spells them.
pub const AUTH_MECHANISMS: [&str; 2] = ["Basic", "Bearer"];

/// mod_rest's own options (`REST_OPTIONS`), validated for the kind of host it is loaded on:
/// a Component (the bot's own JIDs) or a VirtualHost (the users' accounts).
#[derive(Debug, Clone, PartialEq)]
pub struct Rest {
    /// Loaded as a Component, not on a VirtualHost.
    pub on_component: bool,
    /// Which addresses of the host the callback gets stanzas to, of [`EVENTS`]: all three on a
    /// Component; on a VirtualHost only the host itself, so the users' traffic stays theirs.
    pub events: Vec<&'static str>,
    /// The schemes accepted besides `rest_credentials`, of [`AUTH_MECHANISMS`].
    pub auth_mechanisms: Vec<&'static str>,
    /// The largest body `POST /rest` takes, in bytes (`rest_stanza_size_limit`).
    pub stanza_size_limit: usize,
    /// The longest an iq may wait for its answer, whatever `rest_iq_timeout` or the request's
    /// `Prosody-Rest-Timeout` header asks.
    pub iq_max_timeout: Duration,
    /// The password of `Basic <component JID>:<secret>` on a Component; `None` on a VirtualHost
    /// or when unset (then no Basic credential is a Component's).
    pub component_secret: Option<String>,
    /// `anonymous_rest` on a VirtualHost whose `authentication` is `"anonymous"`: a request
    /// needs no credentials and sends as an account of its own, made up for it, as the
    /// community module does. Ignored anywhere else (as there), so a shared config still loads.
    pub anonymous: bool,
}

impl Rest {
    /// mod_rest's own options from their raw values, for a Component (`on_component`) or a
    /// VirtualHost.
    pub fn from_lua(options: &Table, on_component: bool) -> Result<Rest, String> {
        let events = match list(options, "rest_callback_events", &EVENTS)? {
            Some(events) => events,
            None if on_component => EVENTS.to_vec(),
            None => vec!["host"],
        };
        if !on_component {
            if let Some(taken) = events.iter().find(|&&event| event != "host") {
                return Err(format!(
                    "rest_callback_events contains \"{taken}\", which on a VirtualHost would take the users' own \
                     messages, presence and iqs (their chats, their roster) from them: on a VirtualHost the \
                     callback gets stanzas to the host itself, {{ \"host\" }}; load mod_rest as a Component \
                     for a bot of its own"
                ));
            }
            if options.raw_get::<Value>("rest_credentials").map_err(|e| e.to_string())? != Value::Nil {
                return Err("rest_credentials is for mod_rest as a Component: on a VirtualHost one credential \
                            would send as every user of the host; there each account authenticates with its \
                            own password (Basic) or a token Prosody issued (Bearer), see rest_auth_mechanisms"
                    .into());
            }
            if options.raw_get::<Value>("rest_rooms").map_err(|e| e.to_string())? != Value::Nil {
                return Err("rest_rooms is for mod_rest as a Component (a bot in group chats): on a VirtualHost \
                            the module sends as the users, who join rooms themselves"
                    .into());
            }
        }
        let auth_mechanisms =
            list(options, "rest_auth_mechanisms", &AUTH_MECHANISMS)?.unwrap_or(AUTH_MECHANISMS.to_vec());
        let stanza_size_limit = integer(options, "rest_stanza_size_limit", 1, 1 << 30)?.unwrap_or(192 * 1024) as usize;
        let iq_max_timeout = seconds(options, "rest_iq_max_timeout")?.unwrap_or(Duration::from_secs(300));
        let component_secret = match string(options, "component_secret")? {
            Some(secret) if on_component && !secret.is_empty() => Some(secret),
            _ => None,
        };
        let anonymous = !on_component
            && boolean(options, "anonymous_rest")? == Some(true)
            && string(options, "authentication")?.as_deref() == Some("anonymous");
        Ok(Rest {
            on_component,
            events,
            auth_mechanisms,
            stanza_size_limit,
            iq_max_timeout,
            component_secret,
            anonymous,
        })
    }

    /// How long a pushed iq waits for its answer, and the name of what set it: the request's
    /// `Prosody-Rest-Timeout` header (seconds) or else `default` (`rest_iq_timeout`), at most
    /// `max` (`rest_iq_max_timeout`). A header that is not a number of seconds above 0 is
    /// refused, naming it.
    pub fn iq_wait(default: Duration, max: Duration, header: Option<&str>) -> Result<(Duration, &'static str), String> {
        let asked = match header.map(str::trim) {
            None | Some("") => (default, "rest_iq_timeout"),
            Some(text) => match text.parse::<f64>() {
                Ok(n) if n > 0.0 && n.is_finite() => (Duration::from_secs_f64(n.min(86_400.0)), "Prosody-Rest-Timeout"),
                _ => return Err(format!("Prosody-Rest-Timeout must be a number of seconds above 0, not {text:?}")),
            },
        };
        Ok(if asked.0 > max { (max, "rest_iq_max_timeout") } else { asked })
    }
}

/// A list option whose items are some of `known` (matched without regard to case, as HTTP
/// matches scheme names): a string is a list of one; duplicates are dropped.
fn list(options: &Table, name: &str, known: &[&'static str]) -> Result<Option<Vec<&'static str>>, String> {
    let value = options.raw_get::<Value>(name).map_err(|e| e.to_string())?;
    let items: Vec<Value> = match value {
        Value::Nil => return Ok(None),
        Value::String(_) => vec![value],
        Value::Table(t) => t.sequence_values::<Value>().collect::<mlua::Result<_>>().map_err(|e| e.to_string())?,
        other => return Err(format!("{name} must be a list of strings, not a {}", other.type_name())),
    };
    let mut found = Vec::new();
    for item in items {
        let Value::String(text) = &item else {
            return Err(format!("{name} must list strings, found a {}", item.type_name()));
        };
        let text = text.to_string_lossy();
        let Some(&known_item) = known.iter().find(|k| k.eq_ignore_ascii_case(&text)) else {
            let quoted: Vec<String> = known.iter().map(|k| format!("\"{k}\"")).collect();
            return Err(format!("{name} contains \"{text}\": the choices are {}", quoted.join(", ")));
        };
        if !found.contains(&known_item) {
            found.push(known_item);
        }
    }
    if found.is_empty() {
        return Err(format!("{name} is empty: leave it out for the default"));
    }
    Ok(Some(found))
}

impl Config {
    /// The limits of a streamed answer to this module: its stream options, its idle timeout
    /// between pieces, its text bound, and its option names for the messages.
    pub fn stream_limits(&self) -> crate::stream::Limits {
        crate::stream::Limits {
            stream: self.stream,
            idle: self.timeout,
            max_text: usize::try_from(self.max_reply_size).unwrap_or(usize::MAX),
            first_message_grace: crate::stream::FIRST_MESSAGE_GRACE,
            option_prefix: self.profile.prefix,
        }
    }

    /// Defaults for everything but the URL (used by tests).
    pub fn with_url(url: &str) -> Result<Config, String> {
        Config::with_url_named(url, COMPONENT_HTTP.url)
    }

    fn with_url_named(url: &str, option: &str) -> Result<Config, String> {
        let (url, authorization) = split_userinfo(url, option)?;
        Ok(Config {
            url,
            authorization,
            stanzas: vec!["message".into()],
            // A request in flight costs its task and its connection, not a thread: ten thousand
            // fit in the memory a small server has (see BENCHMARKS.md), and need as many file
            // descriptors (see the README).
            max_in_flight: 10_000,
            warm_workers: 4,
            idle_timeout: Duration::from_secs(10),
            queue_size: 10_000,
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(30),
            retry_window: Duration::from_secs(15),
            retries: None,
            ordered: true,
            max_reply_size: 1024 * 1024,
            secret: None,
            headers: Vec::new(),
            ca_file: None,
            chat_states: true,
            chat_state_delay: Duration::from_secs(1),
            name: None,
            profile: COMPONENT_HTTP,
            host: "bot.localhost".into(),
            stream: crate::stream::StreamOptions::default(),
        })
    }

    /// component_http's options from their raw values (used by tests).
    pub fn from_lua(options: &Table) -> Result<Config, String> {
        Config::from_lua_for(options, COMPONENT_HTTP)
    }

    /// The options of the module `profile` describes, from the raw values of its options.
    pub fn from_lua_for(options: &Table, profile: Profile) -> Result<Config, String> {
        let url_name = profile.url;
        let url = match options.raw_get::<Value>(url_name).map_err(|e| e.to_string())? {
            Value::String(s) => s.to_string_lossy(),
            Value::Nil => {
                return Err(format!(
                    "{url_name} is not set: set it to the URL that receives the stanzas, \
                     e.g. {url_name} = \"http://127.0.0.1:8080/bot\""
                ))
            }
            other => return Err(format!("{url_name} must be a string, not a {}", other.type_name())),
        };
        let mut config = Config::with_url_named(&url, url_name)?;
        if profile == REST {
            // mod_rest's URL template (the host, checked above, holds no placeholder).
            crate::url_template::check(&config.url, url_name)?;
        }
        config.profile = profile;
        config.profile.format = callback_format(options, profile)?;
        let n = |suffix: &str| profile.option(suffix);
        config.stanzas = stanza_kinds(options, profile)?;
        // component_post_workers is the older name of the limit, kept working.
        let legacy_workers = integer(options, &n("workers"), 1, MAX_IN_FLIGHT)?;
        if let Some(n) = integer(options, &n("max_in_flight"), 1, MAX_IN_FLIGHT)?.or(legacy_workers) {
            config.max_in_flight = n as usize;
        }
        if let Some(n) = integer(options, &n("warm_workers"), 1, MAX_IN_FLIGHT)? {
            config.warm_workers = n as usize;
        }
        config.warm_workers = config.warm_workers.min(config.max_in_flight);
        if let Some(d) = seconds(options, &n("idle_timeout"))? {
            config.idle_timeout = d;
        }
        if let Some(n) = integer(options, &n("queue_size"), 1, 10_000_000)? {
            config.queue_size = n as usize;
        }
        if let Some(d) = seconds(options, &n("connect_timeout"))? {
            config.connect_timeout = d;
        }
        if let Some(d) = seconds(options, &n("timeout"))? {
            config.timeout = d;
        }
        if let Some(n) = integer(options, &n("max_reply_size"), 1, 1 << 30)? {
            config.max_reply_size = n as u64;
        }
        if let Some(n) = integer(options, &n("retries"), 0, 1000)? {
            config.retries = Some(n as u32);
        }
        if let Some(d) = seconds_or_zero(options, &n("retry_window"))? {
            config.retry_window = d;
        }
        if let Some(b) = boolean(options, &n("ordered"))? {
            config.ordered = b;
        }
        config.secret = string(options, &n("secret"))?;
        if config.secret.as_deref() == Some("") {
            return Err(format!("{} is empty: remove it or set a long random string", n("secret")));
        }
        config.ca_file = string(options, &n("ca_file"))?;
        if let Some(b) = boolean(options, &n("chat_states"))? {
            config.chat_states = b;
        }
        if let Some(d) = seconds(options, &n("chat_state_delay"))? {
            config.chat_state_delay = d;
        }
        config.name = string(options, &n("name"))?;
        if config.name.as_deref().is_some_and(|name| name.trim().is_empty()) {
            return Err(format!("{} is empty: set the name the bot shows, or remove it", n("name")));
        }
        config.stream = crate::stream::StreamOptions::parse(
            profile.prefix,
            number(options, &n("stream_interval"))?,
            number(options, &n("stream_max_corrections"))?,
            number(options, &n("stream_timeout"))?,
        )?;
        config.headers = headers(options, &n("headers"))?;
        if config.authorization.is_some() && config.headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("authorization"))
        {
            return Err(format!(
                "{} sets Authorization and {url_name} has user:password@: keep one of the two",
                n("headers")
            ));
        }
        if config.connect_timeout > config.timeout {
            config.connect_timeout = config.timeout;
        }
        Ok(config)
    }
}

/// The contract of the callbacks: the profile's own, or the one its content type option names
/// (`application/xmpp+xml`, mod_rest's default, or `application/json`, component_http's mapping).
fn callback_format(options: &Table, profile: Profile) -> Result<Format, String> {
    let Some(name) = profile.callback_content_type else { return Ok(profile.format) };
    let Some(given) = string(options, name)? else { return Ok(profile.format) };
    if given.eq_ignore_ascii_case("application/xmpp+xml") {
        Ok(Format::Xml)
    } else if given.eq_ignore_ascii_case("application/json") || given.eq_ignore_ascii_case("json") {
        // "json" is the community mod_rest's shorthand for the same.
        Ok(Format::Json)
    } else {
        Err(format!(
            "{name} must be \"application/xmpp+xml\" (the default: stanzas as XML) or \"application/json\" \
             (or \"json\": the JSON mapping of component_http), not \"{given}\""
        ))
    }
}

/// `component_post_stanzas` (documented) or `post_stanza_types` (what the original code reads).
fn stanza_kinds(options: &Table, profile: Profile) -> Result<Vec<String>, String> {
    let documented = profile.option("stanzas");
    // `post_stanza_types` is what the original component_http's code reads.
    // `rest_callback_stanzas` is the current community mod_rest's name.
    let names: &[&str] = match profile.prefix {
        p if p == COMPONENT_HTTP.prefix => &[&documented, "post_stanza_types"],
        p if p == REST.prefix => &[&documented, "rest_callback_stanzas"],
        _ => &[&documented],
    };
    for &name in names {
        let value = options.raw_get::<Value>(name).map_err(|e| e.to_string())?;
        let items: Vec<Value> = match value {
            Value::Nil => continue,
            Value::String(_) => vec![value],
            Value::Table(t) => t.sequence_values::<Value>().collect::<mlua::Result<_>>().map_err(|e| e.to_string())?,
            other => return Err(format!("{name} must be a list of stanza kinds, not a {}", other.type_name())),
        };
        let mut kinds = Vec::new();
        for item in items {
            let kind = match &item {
                Value::String(s) => s.to_string_lossy(),
                other => return Err(format!("{name} must list strings, found a {}", other.type_name())),
            };
            if !KINDS.contains(&kind.as_str()) {
                return Err(format!("{name} contains \"{kind}\": the kinds are \"message\", \"presence\" and \"iq\""));
            }
            if !kinds.contains(&kind) {
                kinds.push(kind);
            }
        }
        return Ok(kinds);
    }
    Ok(profile.default_stanzas.iter().map(|k| k.to_string()).collect())
}

/// `component_post_headers = { ["Authorization"] = "Bearer …" }`: names and values checked
/// now, so a typo cannot make every request fail later.
fn headers(options: &Table, name: &str) -> Result<Vec<(String, String)>, String> {
    #[allow(non_snake_case)]
    let NAME = name;
    let table = match options.raw_get::<Value>(NAME).map_err(|e| e.to_string())? {
        Value::Nil => return Ok(Vec::new()),
        Value::Table(t) => t,
        other => return Err(format!("{NAME} must be a table of header names to values, not a {}", other.type_name())),
    };
    let reserved = [
        "content-type",
        "content-length",
        "host",
        "transfer-encoding",
        "connection",
        "x-delivery-id",
        "x-retry-count",
        "x-signature",
        "x-signature-timestamp",
    ];
    let mut headers = Vec::new();
    for pair in table.pairs::<Value, Value>() {
        let (k, v) = pair.map_err(|e| e.to_string())?;
        let (Value::String(k), Value::String(v)) = (&k, &v) else {
            return Err(format!("{NAME} must map header names (strings) to values (strings)"));
        };
        let (k, v) = (k.to_string_lossy(), v.to_string_lossy());
        let valid_name =
            !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !valid_name {
            return Err(format!("{NAME}: \"{k}\" is not a valid header name"));
        }
        if v.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
            return Err(format!("{NAME}: the value of {k} contains a line break"));
        }
        if reserved.contains(&k.to_ascii_lowercase().as_str()) {
            return Err(format!("{NAME}: {k} is set by the module and cannot be overridden"));
        }
        headers.push((k, v));
    }
    headers.sort();
    Ok(headers)
}

/// Splits `scheme://user:pass@host/…` into the URL without userinfo and a Basic auth header;
/// errors name `option`, the URL option of the running module.
fn split_userinfo(url: &str, option: &str) -> Result<(String, Option<String>), String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("{option} \"{url}\" is not an absolute http:// or https:// URL"))?;
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return Err(format!("{option} \"{url}\" must use http or https, not {scheme}"));
    }
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let (userinfo, host) = match authority.rfind('@') {
        Some(at) => (Some(&authority[..at]), &authority[at + 1..]),
        None => (None, authority),
    };
    if host.is_empty() {
        return Err(format!("{option} \"{url}\" has no host"));
    }
    // The port, if any, is what follows the last ':' outside an IPv6 literal's brackets.
    let port = host.rsplit_once(']').map_or(host, |(_, rest)| rest).rsplit_once(':').map(|(_, port)| port);
    let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|p| p > 0));
    if format!("{scheme}://{host}/").parse::<http::Uri>().is_err() || !port_ok {
        return Err(format!("{option} \"{url}\": \"{host}\" is not a valid host[:port]"));
    }
    if path.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("{option} \"{url}\" contains spaces or control characters: percent-encode them"));
    }
    let authorization =
        userinfo.map(|u| format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(u.as_bytes())));
    Ok((format!("{scheme}://{host}{path}"), authorization))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_becomes_basic_auth() {
        let c = Config::with_url("https://user:pa55@example.com:8443/hook?x=1").unwrap();
        assert_eq!(c.url, "https://example.com:8443/hook?x=1");
        assert_eq!(c.authorization.as_deref(), Some("Basic dXNlcjpwYTU1"));
        let plain = Config::with_url("http://127.0.0.1:8080").unwrap();
        assert_eq!(plain.url, "http://127.0.0.1:8080");
        assert_eq!(plain.authorization, None);
    }

    #[test]
    fn bad_urls_are_refused_by_name() {
        for url in [
            "example.com/hook",
            "ftp://example.com/",
            "http:///path",
            "http://exa mple.com/",
            "http://example.com:99999/",
            "http://example.com:0/",
            "http://example.com:8o8o/",
            "http://[::1/",
            "http://example.com/a path",
        ] {
            assert!(Config::with_url(url).unwrap_err().contains("component_post_url"), "{url}");
        }
    }

    #[test]
    fn upload_options_are_validated_with_their_names() {
        let lua = mlua::Lua::new();
        let check = |source: &str, profile: Profile| -> Result<Upload, String> {
            let table: Table = lua.load(source).eval().unwrap();
            Upload::from_lua_for(&table, profile)
        };
        let default = check("return {}", COMPONENT_HTTP).unwrap();
        let thirty = Duration::from_secs(30);
        assert_eq!(default, Upload { max_file_size: 10 * 1024 * 1024, service: None, timeout: thirty });
        let set = "return { rest_max_file_size = 2048, rest_upload_service = 'Upload.Localhost', rest_timeout = 5 }";
        assert_eq!(
            check(set, REST).unwrap(),
            Upload { max_file_size: 2048, service: Some("upload.localhost".into()), timeout: Duration::from_secs(5) }
        );
        for (source, named) in [
            ("return { component_post_max_file_size = 0 }", "component_post_max_file_size must be a whole number"),
            ("return { component_post_max_file_size = 1.5 }", "component_post_max_file_size must be a whole number"),
            ("return { component_post_max_file_size = 2^31 }", "component_post_max_file_size must be a whole number"),
            (
                "return { component_post_upload_service = '@x' }",
                "component_post_upload_service is \"@x\", not a valid JID",
            ),
            ("return { component_post_upload_service = 5 }", "component_post_upload_service must be a string"),
        ] {
            assert!(check(source, COMPONENT_HTTP).unwrap_err().starts_with(named), "{source}");
        }
        for profile in [COMPONENT_HTTP, REST] {
            let names = profile.option_names();
            for suffix in UPLOAD_OPTIONS {
                assert!(names.contains(&profile.option(suffix)), "{suffix}");
            }
        }
    }

    #[test]
    fn options_are_validated_with_their_names() {
        let lua = mlua::Lua::new();
        let check = |source: &str| -> Result<Config, String> {
            let table: Table = lua.load(source).eval().unwrap();
            Config::from_lua(&table)
        };
        assert!(check("return {}").unwrap_err().contains("component_post_url is not set"));
        let both =
            "return { component_post_url = 'http://u:p@h/', component_post_headers = { authorization = 'Bearer t' } }";
        assert!(check(both).unwrap_err().contains("component_post_headers sets Authorization and component_post_url"));
        let c = check("return { component_post_url = 'http://h/', component_post_workers = 2 }").unwrap();
        assert_eq!((c.max_in_flight, c.warm_workers), (2, 2), "the old name still limits, the warm set fits");
        let c = check("return { component_post_url = 'http://h/', component_post_workers = 2, component_post_max_in_flight = 50 }").unwrap();
        assert_eq!(c.max_in_flight, 50, "the new name wins");
        let c = check("return { component_post_url = 'http://h/', component_post_name = 'Echo Bot' }").unwrap();
        assert_eq!(c.name.as_deref(), Some("Echo Bot"));
        assert_eq!(check("return { component_post_url = 'http://h/' }").unwrap().name, None);
        let table: Table =
            lua.load("return { rest_callback_url = 'http://h/', rest_name = 'Rest Bot' }").eval().unwrap();
        assert_eq!(Config::from_lua_for(&table, REST).unwrap().name.as_deref(), Some("Rest Bot"));
        let c = check("return { component_post_url = 'http://h/', component_post_retry_window = 0 }").unwrap();
        assert_eq!((c.retry_window, c.retries), (Duration::ZERO, None));
        let c = check("return { component_post_url = 'http://h/', post_stanza_types = { 'message', 'iq' } }").unwrap();
        assert_eq!(c.stanzas, ["message", "iq"]);
        let c = check("return { component_post_url = 'http://h/', component_post_stanzas = 'presence', post_stanza_types = { 'iq' } }").unwrap();
        assert_eq!(c.stanzas, ["presence"]);
        assert!(check("return { component_post_url = 'http://h/', component_post_stanzas = { 'mesage' } }")
            .unwrap_err()
            .contains("component_post_stanzas contains \"mesage\""));
        assert!(check("return { component_post_url = 'http://h/', component_post_workers = 0 }")
            .unwrap_err()
            .contains("component_post_workers"));
        assert!(check("return { component_post_url = 'http://h/', component_post_timeout = 'soon' }")
            .unwrap_err()
            .contains("component_post_timeout"));
        let c = check(
            "return { component_post_url = 'http://h/', component_post_timeout = 2.5, component_post_workers = '8' }",
        )
        .unwrap();
        assert_eq!(c.timeout, Duration::from_millis(2500));
        assert_eq!((c.max_in_flight, c.warm_workers), (8, 4));
        assert_eq!(c.connect_timeout, Duration::from_millis(2500), "connecting never outlasts the whole deadline");
        let c = check(
            "return { component_post_url = 'http://h/', component_post_retries = 0, component_post_ordered = false, \
             component_post_secret = 's', component_post_headers = { ['X-B'] = '2', Authorization = 'Bearer t' } }",
        )
        .unwrap();
        assert_eq!((c.retries, c.ordered, c.secret.as_deref()), (Some(0), false, Some("s")));
        assert_eq!(c.headers, [("Authorization".to_string(), "Bearer t".to_string()), ("X-B".into(), "2".into())]);
        for (source, name) in [
            ("component_post_retries = -1", "component_post_retries"),
            ("component_post_ordered = 'yes'", "component_post_ordered"),
            ("component_post_secret = ''", "component_post_secret"),
            ("component_post_headers = { ['Bad Name'] = 'x' }", "component_post_headers"),
            ("component_post_headers = { ['X-A'] = 'a\\r\\nInjected: 1' }", "line break"),
            ("component_post_headers = { ['Content-Type'] = 'text/plain' }", "cannot be overridden"),
            ("component_post_ca_file = 7", "component_post_ca_file"),
            ("component_post_max_in_flight = 0", "component_post_max_in_flight"),
            ("component_post_retry_window = -1", "component_post_retry_window"),
            ("component_post_chat_state_delay = 0", "component_post_chat_state_delay"),
            ("component_post_name = ''", "component_post_name is empty"),
            ("component_post_name = ' '", "component_post_name is empty"),
            ("component_post_name = 7", "component_post_name must be a string"),
        ] {
            let err = check(&format!("return {{ component_post_url = 'http://h/', {source} }}")).unwrap_err();
            assert!(err.contains(name), "{source}: {err}");
        }
    }

    #[test]
    fn rest_callbacks_speak_the_content_type_their_option_names() {
        let lua = mlua::Lua::new();
        let rest = |extra: &str| -> Result<Config, String> {
            let source = format!("return {{ rest_callback_url = 'http://h/', {extra} }}");
            Config::from_lua_for(&lua.load(source).eval().unwrap(), REST)
        };
        assert_eq!(rest("").unwrap().profile.format, Format::Xml);
        let xml = rest("rest_callback_content_type = 'application/xmpp+xml'").unwrap();
        assert_eq!(xml.profile.format, Format::Xml);
        let json = rest("rest_callback_content_type = 'Application/JSON'").unwrap();
        assert_eq!(
            rest("rest_callback_content_type = 'json'").unwrap().profile.format,
            Format::Json,
            "their shorthand"
        );
        assert_eq!((json.profile.format, json.profile.prefix), (Format::Json, "rest_"));
        // What the callbacks then speak: component_http's requests and replies.
        assert_eq!(crate::request::content_type(json.profile.format), "application/json");
        // And read either type as a reply, as the community module does (answer.rs).
        let contract = crate::answer::Contract::of(&json);
        assert!(
            contract.is_reply(200, Some("application/json")) && contract.is_reply(200, Some("application/xmpp+xml"))
        );
        for (value, why) in [
            ("'text/xml'", "rest_callback_content_type must be \"application/xmpp+xml\""),
            ("'application/json; charset=utf-8'", "not \"application/json; charset=utf-8\""),
            ("''", "rest_callback_content_type must be"),
            ("true", "rest_callback_content_type must be a string"),
        ] {
            let err = rest(&format!("rest_callback_content_type = {value}")).unwrap_err();
            assert!(err.contains(why), "{value}: {err}");
        }
        assert!(REST.option_names().iter().any(|n| n == "rest_callback_content_type"));
        // component_http has no such option: its contract is JSON, and the name is not read.
        assert!(!COMPONENT_HTTP.option_names().iter().any(|n| n.contains("content_type")));
        let table: Table = lua.load("return { component_post_url = 'http://h/' }").eval().unwrap();
        assert_eq!(Config::from_lua(&table).unwrap().profile.format, Format::Json);
    }

    #[test]
    fn rest_options_follow_the_community_modules_names_and_defaults() {
        let lua = mlua::Lua::new();
        let rest = |source: &str, on_component: bool| -> Result<Rest, String> {
            Rest::from_lua(&lua.load(format!("return {{ {source} }}")).eval().unwrap(), on_component)
        };
        let component = rest("", true).unwrap();
        assert_eq!(component.events, ["host", "bare", "full"]);
        assert_eq!(component.auth_mechanisms, ["Basic", "Bearer"]);
        assert_eq!((component.stanza_size_limit, component.iq_max_timeout), (192 * 1024, Duration::from_secs(300)));
        let host = rest("", false).unwrap();
        assert_eq!(host.events, ["host"], "on a VirtualHost only stanzas to the host itself");
        let set = rest(
            "rest_callback_events = { 'bare' }, rest_auth_mechanisms = 'bearer', rest_stanza_size_limit = 1000, \
             rest_iq_max_timeout = 20, component_secret = 's3cret'",
            true,
        )
        .unwrap();
        assert_eq!((set.events, set.auth_mechanisms), (vec!["bare"], vec!["Bearer"]));
        assert_eq!((set.stanza_size_limit, set.iq_max_timeout), (1000, Duration::from_secs(20)));
        assert_eq!(set.component_secret.as_deref(), Some("s3cret"));
        assert_eq!(rest("component_secret = 's3cret'", false).unwrap().component_secret, None);
        for (source, on_component, why) in [
            ("rest_callback_events = { 'bare' }", false, "rest_callback_events contains \"bare\""),
            ("rest_callback_events = { 'host', 'full' }", false, "would take the users' own"),
            ("rest_callback_events = { 'room' }", true, "rest_callback_events contains \"room\""),
            ("rest_callback_events = {}", true, "rest_callback_events is empty"),
            ("rest_callback_events = 7", true, "rest_callback_events must be a list"),
            ("rest_auth_mechanisms = { 'Digest' }", true, "rest_auth_mechanisms contains \"Digest\""),
            ("rest_auth_mechanisms = { 1 }", true, "rest_auth_mechanisms must list strings"),
            ("rest_stanza_size_limit = 0", true, "rest_stanza_size_limit must be"),
            ("rest_iq_max_timeout = -1", true, "rest_iq_max_timeout must be"),
            ("rest_credentials = 'Bearer t'", false, "rest_credentials is for mod_rest as a Component"),
            ("rest_rooms = { 'a@conference.localhost' }", false, "rest_rooms is for mod_rest as a Component"),
        ] {
            let err = rest(source, on_component).unwrap_err();
            assert!(err.contains(why), "{source}: {err}");
        }
        assert!(rest("rest_credentials = 'Bearer t', rest_rooms = { 'a@conference.localhost' }", true).is_ok());
        let names = REST.option_names();
        for name in REST_OPTIONS {
            assert!(names.iter().any(|n| n == name), "{name} in {names:?}");
        }
        assert!(!COMPONENT_HTTP.option_names().iter().any(|n| n == "rest_callback_events"));
    }

    #[test]
    fn anonymous_rest_only_on_an_anonymous_virtual_host() {
        let lua = mlua::Lua::new();
        let anonymous = |source: &str, on_component: bool| {
            Rest::from_lua(&lua.load(format!("return {{ {source} }}")).eval().unwrap(), on_component).unwrap().anonymous
        };
        assert!(anonymous("anonymous_rest = true, authentication = 'anonymous'", false));
        // Ignored elsewhere, as the community module ignores it: the config still loads.
        assert!(!anonymous("anonymous_rest = true, authentication = 'internal_hashed'", false));
        assert!(!anonymous("anonymous_rest = true", false));
        assert!(!anonymous("anonymous_rest = true, authentication = 'anonymous'", true));
        assert!(!anonymous("authentication = 'anonymous'", false));
    }

    #[test]
    fn an_iqs_wait_is_the_header_or_the_option_bounded_by_the_maximum() {
        let (default, max) = (Duration::from_secs(120), Duration::from_secs(300));
        let wait = |header: Option<&str>| Rest::iq_wait(default, max, header);
        assert_eq!(wait(None), Ok((default, "rest_iq_timeout")));
        assert_eq!(wait(Some("")), Ok((default, "rest_iq_timeout")));
        assert_eq!(wait(Some("2.5")), Ok((Duration::from_millis(2500), "Prosody-Rest-Timeout")));
        assert_eq!(wait(Some(" 1000 ")), Ok((max, "rest_iq_max_timeout")), "the header is bounded");
        let long = Rest::iq_wait(Duration::from_secs(600), max, None);
        assert_eq!(long, Ok((max, "rest_iq_max_timeout")), "and so is rest_iq_timeout");
        for header in ["0", "-1", "soon", "NaN", "inf"] {
            assert!(wait(Some(header)).unwrap_err().contains("Prosody-Rest-Timeout"), "{header}");
        }
    }

    #[test]
    fn rest_callback_stanzas_is_the_community_name_of_rest_stanzas() {
        let lua = mlua::Lua::new();
        let kinds = |extra: &str| -> Result<Vec<String>, String> {
            let source = format!("return {{ rest_callback_url = 'http://h/', {extra} }}");
            Config::from_lua_for(&lua.load(source).eval().unwrap(), REST).map(|c| c.stanzas)
        };
        assert_eq!(kinds("").unwrap(), ["message", "presence", "iq"]);
        assert_eq!(kinds("rest_callback_stanzas = { 'message' }").unwrap(), ["message"]);
        assert_eq!(kinds("rest_callback_stanzas = { 'message' }, rest_stanzas = { 'iq' }").unwrap(), ["iq"]);
        assert!(kinds("rest_callback_stanzas = { 'mesage' }").unwrap_err().contains("rest_callback_stanzas"));
        let table: Table = lua.load("return { rest_credentials = 'Bearer t' }").eval().unwrap();
        assert_eq!(Push::from_lua_for(&table, REST).unwrap().iq_timeout, Duration::from_secs(120));
    }

    #[test]
    fn push_options_are_validated_with_the_running_modules_names() {
        let lua = mlua::Lua::new();
        let check = |source: &str, profile: Profile| -> Result<Push, String> {
            let table: Table = lua.load(source).eval().unwrap();
            Push::from_lua_for(&table, profile)
        };
        let defaults = check("return {}", COMPONENT_HTTP).unwrap();
        assert_eq!(
            defaults,
            Push { credentials: None, iq_timeout: Duration::from_secs(30), max_size: 1024 * 1024, max_iqs: 100 }
        );
        let set = check(
            "return { rest_credentials = 'Bearer t', rest_iq_timeout = 2.5, rest_max_push_size = '4096', \
             rest_max_push_iqs = 200 }",
            REST,
        )
        .unwrap();
        assert_eq!(
            set,
            Push {
                credentials: Some("Bearer t".into()),
                iq_timeout: Duration::from_millis(2500),
                max_size: 4096,
                max_iqs: 200
            }
        );
        for (source, profile, name) in [
            ("component_post_push_credentials = ''", COMPONENT_HTTP, "component_post_push_credentials is empty"),
            ("component_post_push_credentials = ' \t '", COMPONENT_HTTP, "component_post_push_credentials is empty"),
            ("rest_credentials = ''", REST, "rest_credentials is empty"),
            ("rest_credentials = 'Bearer t '", REST, "rest_credentials starts or ends with a space"),
            ("rest_credentials = 'Bearer t\\r\\nX: y'", REST, "rest_credentials starts or ends"),
            ("rest_credentials = true", REST, "rest_credentials must be a string"),
            ("component_post_push_iq_timeout = -1", COMPONENT_HTTP, "component_post_push_iq_timeout must be"),
            ("rest_iq_timeout = 0", REST, "rest_iq_timeout must be"),
            ("rest_iq_timeout = 'soon'", REST, "rest_iq_timeout must be a number"),
            ("component_post_max_push_size = -1", COMPONENT_HTTP, "component_post_max_push_size must be"),
            ("rest_max_push_size = 0.5", REST, "rest_max_push_size must be"),
            ("rest_max_push_iqs = 0", REST, "rest_max_push_iqs must be a whole number from 1 to 200"),
            ("component_post_max_push_iqs = 201", COMPONENT_HTTP, "component_post_max_push_iqs must be"),
        ] {
            let err = check(&format!("return {{ {source} }}"), profile).unwrap_err();
            assert!(err.contains(name), "{source}: {err}");
        }
        let names = REST.option_names();
        for name in ["rest_credentials", "rest_iq_timeout", "rest_max_push_size", "rest_max_push_iqs"] {
            assert!(names.iter().any(|n| n == name), "{name} in {names:?}");
        }
        let names = COMPONENT_HTTP.option_names();
        for name in ["component_post_push_credentials", "component_post_push_iq_timeout", "component_post_max_push_iqs"]
        {
            assert!(names.iter().any(|n| n == name), "{name} in {names:?}");
        }
    }
}
