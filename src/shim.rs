//! What the Lua shim asks of the native side besides the client, so that the decisions and the
//! names live here and the Lua only performs them: the module's profile (its option names and
//! push path, from [`Profile`]), the bot's presence ([`crate::presence`]) and the latency replay
//! ([`crate::metrics`]).

use mlua::{Lua, Table};

use crate::config::Profile;

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
