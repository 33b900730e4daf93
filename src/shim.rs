//! What the Lua shim asks of the native side besides the client, so that the decisions and the
//! names live here and the Lua only performs them: the module's profile (its option names and
//! push path, from [`Profile`]), the bot's presence ([`crate::presence`]) and the latency replay
//! ([`crate::metrics`]).

use std::time::Duration;

use mlua::{Lua, MultiValue, Table, Value};

use crate::config::{Profile, Rest};

/// `profile(name)`: what the Lua needs of the profile `name` (`component_http` or `rest`) as a
/// table: `native` (the name), `url_option`, `stanzas_option` and `push_path` (the community
/// modules' path, which is the profile's name: `/component_http`, `/rest`).
fn profile(lua: &Lua, name: String) -> mlua::Result<Table> {
    let profile =
        Profile::by_name(&name).ok_or_else(|| mlua::Error::runtime(format!("unknown module profile {name:?}")))?;
    let t = lua.create_table()?;
    t.set("native", name.as_str())?;
    t.set("url_option", profile.url)?;
    t.set("stanzas_option", profile.option("stanzas"))?;
    t.set("push_path", name.as_str())?;
    Ok(t)
}

/// `rest_options(options, on_component)`: mod_rest's own options ([`Rest`]) as a table for the
/// Lua: `events` and `auth_mechanisms` (sequences), `callback_priority` (on a VirtualHost only:
/// the callback's hooks go below Prosody's own handlers, so only what nothing else handles goes
/// to it; on a Component the client's own priorities stand), `callback_sender` (on a VirtualHost
/// only: the callback replies as the host itself, not as its users), `stanza_size_limit`,
/// `iq_max_timeout` (seconds), `component_secret`, and `names` (each option's name for
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
}
