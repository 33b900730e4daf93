//! What the Lua shim asks of the native side besides the client, so that the decisions and the
//! names live here and the Lua only performs them: the module's profile (its option names and
//! push path, from [`Profile`]), the bot's presence ([`crate::presence`]) and the latency replay
//! ([`crate::metrics`]).

use std::time::Duration;

use mlua::{Lua, MultiValue, Table, Value};

use crate::config::Rest;
use crate::inbound::{self, Refusal};
use crate::jsonmap::Profile;
use crate::rest;
use crate::stanza::Incoming;

/// `profile(name)`: what the Lua needs of the profile `name` (`component_http` or `rest`) as a
/// table: `native` (the name), `url_option`, `stanzas_option`, `push_path` (the community
/// modules' path, which is the profile's name: `/component_http`, `/rest`) and
/// `content_type_option` (mod_rest's callback format option; nil for component_http).
fn profile(lua: &Lua, name: String) -> mlua::Result<Table> {
    let profile = crate::config::Profile::by_name(&name)
        .ok_or_else(|| mlua::Error::runtime(format!("unknown module profile {name:?}")))?;
    let t = lua.create_table()?;
    t.set("native", name.as_str())?;
    t.set("url_option", profile.url)?;
    t.set("stanzas_option", profile.option("stanzas"))?;
    t.set("push_path", name.as_str())?;
    t.set("content_type_option", profile.callback_content_type)?;
    Ok(t)
}

/// `rest_options(options, on_component)`: mod_rest's own options ([`Rest`]) as a table for the
/// Lua: `events` and `auth_mechanisms` (sequences), `callback_priority` (on a VirtualHost only:
/// the callback's hooks go below Prosody's own handlers, so only what nothing else handles goes
/// to it; on a Component the client's own priorities stand), `callback_sender` (on a VirtualHost
/// only: the callback replies as the host itself, not as its users), `stanza_size_limit`,
/// `iq_max_timeout` (seconds), `component_secret`, `anonymous` (see [`Rest::anonymous`]), and `names` (each option's name for
/// messages); or `nil, message` when one is invalid.
fn rest_options(lua: &Lua, (options, on_component, host): (Table, bool, String)) -> mlua::Result<MultiValue> {
    let rest = match Rest::from_lua(&options, on_component) {
        Ok(rest) => rest,
        Err(why) => return Ok(MultiValue::from_vec(vec![Value::Nil, Value::String(lua.create_string(why)?)])),
    };
    let t = lua.create_table()?;
    t.set("on_component", rest.on_component)?;
    t.set("events", lua.create_sequence_from(rest.events)?)?;
    if !rest.on_component {
        t.set("callback_priority", -1)?;
        // What the callback's replies are checked as: the host itself (see `policy::check`).
        t.set("callback_sender", format!("@{host}"))?;
    }
    t.set("auth_mechanisms", lua.create_sequence_from(rest.auth_mechanisms)?)?;
    t.set("stanza_size_limit", rest.stanza_size_limit)?;
    t.set("iq_max_timeout", rest.iq_max_timeout.as_secs_f64())?;
    t.set("component_secret", rest.component_secret)?;
    t.set("anonymous", rest.anonymous)?;
    let names = lua.create_table()?;
    for (key, name) in [("stanza_size_limit", "rest_stanza_size_limit"), ("auth_mechanisms", "rest_auth_mechanisms")] {
        names.set(key, name)?;
    }
    t.set("names", names)?;
    Ok(MultiValue::from_vec(vec![Value::Table(t)]))
}

/// `rest_iq_wait(default, max, header)`: the seconds a pushed iq waits and the name of what set
/// them (see [`Rest::iq_wait`]), or `nil, message` when the header is not a number of seconds.
fn rest_iq_wait(lua: &Lua, (default, max, header): (f64, f64, Option<String>)) -> mlua::Result<MultiValue> {
    let wait = Rest::iq_wait(Duration::from_secs_f64(default), Duration::from_secs_f64(max), header.as_deref());
    Ok(MultiValue::from_vec(match wait {
        Ok((wait, name)) => vec![Value::Number(wait.as_secs_f64()), Value::String(lua.create_string(name)?)],
        Err(why) => vec![Value::Nil, Value::String(lua.create_string(why)?)],
    }))
}

/// `rest_push(get, path, query, content_type, body, sender, max_size, stanza_mt)`: the stanza a
/// request to mod_rest's `/rest/<path>` asks to send as `sender` (in any of the forms
/// [`crate::rest`] reads), and, fourth, the messages to send right after it; or
/// `nil, status, message` when it is refused.
#[allow(clippy::type_complexity)]
fn rest_push(
    lua: &Lua,
    (get, path, query, content_type, body, sender, max_size, stanza_mt): (
        bool,
        String,
        Option<String>,
        Option<String>,
        mlua::String,
        String,
        usize,
        Table,
    ),
) -> mlua::Result<MultiValue> {
    let body = body.as_bytes();
    let pushed = if body.len() > max_size {
        Err(Refusal::new(413, format!("the stanza is larger than {max_size} bytes")))
    } else {
        match rest::read(get, &path, query.as_deref(), content_type.as_deref(), &body) {
            Ok(rest::Read::Body) => {
                inbound::stanza_from_push(&body, content_type.as_deref(), &sender, Some(Profile::Rest), max_size)
            }
            Ok(rest::Read::Fields(fields)) => inbound::stanza_from_rest_fields(&fields, &sender),
            Err(refusal) => Err(refusal),
        }
    };
    pushed_values(lua, pushed, &stanza_mt)
}

/// What a push function returns to Lua: the stanza to route (and, fourth, an array of the
/// messages to route right after it), or `nil, status, message` when the push is refused.
pub(crate) fn pushed_values(
    lua: &Lua,
    pushed: Result<crate::outcome::Reply, Refusal>,
    stanza_mt: &Table,
) -> mlua::Result<MultiValue> {
    let push = match pushed {
        Ok(push) => push,
        Err(refusal) => {
            return Ok(MultiValue::from_vec(vec![
                Value::Nil,
                Value::Integer(i64::from(refusal.status)),
                Value::String(lua.create_string(refusal.message)?),
            ]))
        }
    };
    let mut values = vec![Value::Table(push.stanza.to_lua(lua, stanza_mt)?)];
    if !push.after.is_empty() {
        let after = lua.create_table_with_capacity(push.after.len(), 0)?;
        for message in &push.after {
            after.raw_push(message.to_lua(lua, stanza_mt)?)?;
        }
        values.extend([Value::Nil, Value::Nil, Value::Table(after)]);
    }
    Ok(MultiValue::from_vec(values))
}

/// `rest_answer_format(content_type, accept, callback)`: `"xml"`, `"json"`, `"form"` or
/// `"cbor"`, what mod_rest answers a request in (see [`rest::negotiate::answer`]); with
/// `callback` true, `"xml"` or `"json"`, what the callback whose probe answered `accept` is
/// written in ([`rest::negotiate::callback`]).
fn rest_answer_format(
    _: &Lua,
    (content_type, accept, callback): (Option<String>, Option<String>, Option<bool>),
) -> mlua::Result<&'static str> {
    Ok(if callback.unwrap_or(false) {
        rest::negotiate::callback(accept.as_deref())
    } else {
        rest::negotiate::answer(content_type.as_deref(), accept.as_deref())
    }
    .name())
}

/// `rest_cbor(json)`: the JSON text `json` (an answer the module built) written in CBOR.
fn rest_cbor(lua: &Lua, json: mlua::String) -> mlua::Result<mlua::String> {
    let value: serde_json::Value = serde_json::from_slice(&json.as_bytes())
        .map_err(|e| mlua::Error::runtime(format!("an answer to write in CBOR is not JSON: {e}")))?;
    lua.create_string(rest::cbor::encode(&value))
}

/// `rest_form(stanza)`: a stanza answered as a form (its JSON's top-level text fields).
fn rest_form(_: &Lua, stanza: Table) -> mlua::Result<String> {
    let incoming = Incoming::from_lua(&stanza).map_err(mlua::Error::runtime)?;
    let json = crate::request::encode_as(&incoming, Profile::Rest);
    let fields = match serde_json::from_slice(&json) {
        Ok(serde_json::Value::Object(fields)) => fields,
        _ => return Err(mlua::Error::runtime("a stanza's JSON is not an object")),
    };
    Ok(rest::form::encode(&fields))
}

/// Adds this file's functions to the table `require "component_http_native"` returns.
pub fn register(lua: &Lua, exports: &Table) -> mlua::Result<()> {
    exports.set("profile", lua.create_function(|lua, name| crate::guard("profile", || profile(lua, name)))?)?;
    exports.set(
        "latency_replay",
        lua.create_function(|lua, args| {
            crate::guard("latency_replay", || crate::metrics::latency_replay_lua(lua, args))
        })?,
    )?;
    exports.set(
        "rest_options",
        lua.create_function(|lua, args| crate::guard("rest_options", || rest_options(lua, args)))?,
    )?;
    exports.set(
        "rest_iq_wait",
        lua.create_function(|lua, args| crate::guard("rest_iq_wait", || rest_iq_wait(lua, args)))?,
    )?;
    exports.set("rest_push", lua.create_function(|lua, args| crate::guard("rest_push", || rest_push(lua, args)))?)?;
    exports.set(
        "rest_answer_format",
        lua.create_function(|lua, args| crate::guard("rest_answer_format", || rest_answer_format(lua, args)))?,
    )?;
    exports.set("rest_form", lua.create_function(|lua, args| crate::guard("rest_form", || rest_form(lua, args)))?)?;
    exports.set("rest_cbor", lua.create_function(|lua, json| crate::guard("rest_cbor", || rest_cbor(lua, json)))?)?;
    exports.set(
        "presence",
        lua.create_function(|lua, args| crate::guard("presence", || crate::presence::new_lua(lua, args)))?,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_profile_names_the_running_modules_options_and_path() {
        let lua = Lua::new();
        let t = profile(&lua, "component_http".into()).unwrap();
        assert_eq!(t.get::<String>("url_option").unwrap(), "component_post_url");
        assert_eq!(t.get::<String>("stanzas_option").unwrap(), "component_post_stanzas");
        assert_eq!(t.get::<String>("push_path").unwrap(), "component_http");
        let t = profile(&lua, "rest".into()).unwrap();
        assert_eq!(t.get::<String>("url_option").unwrap(), "rest_callback_url");
        assert_eq!(t.get::<String>("stanzas_option").unwrap(), "rest_stanzas");
        assert_eq!(t.get::<String>("push_path").unwrap(), "rest");
        assert!(profile(&lua, "muc".into()).is_err());
    }

    #[test]
    fn an_answer_is_written_in_cbor_from_its_json_and_a_callback_never_is() {
        let lua = Lua::new();
        let written = rest_cbor(&lua, lua.create_string(r#"{"a":1}"#).unwrap()).unwrap();
        assert_eq!(&written.as_bytes()[..], [0xa1, 0x61, b'a', 0x01]);
        assert!(rest_cbor(&lua, lua.create_string("{").unwrap()).is_err());
        let format = |accept: &str, callback| rest_answer_format(&lua, (None, Some(accept.into()), callback)).unwrap();
        assert_eq!(format("application/cbor", None), "cbor");
        assert_eq!(format("application/cbor, application/json;q=0.5", Some(true)), "json");
    }
}
