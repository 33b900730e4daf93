//! What the module's Lua methods rely on: mlua runs every Rust method called from Lua under its
//! own panic guard, so a panic (a bug) in one is a Lua error raised in the calling Lua code —
//! caught by Prosody's handlers like any error of a module — and not an unwind across Lua's C
//! frames; the Lua state is still usable after it. The module's methods (the client's, the
//! rooms') therefore need no guard of their own. In module mode `pcall` and `xpcall` are Lua's
//! own, as here with the default `catch_rust_panics`.

use mlua::{Lua, UserData, UserDataMethods};

/// The smallest userdata with a method that panics, and one that does not.
struct Tiny;

impl UserData for Tiny {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_method("boom", |_, _, ()| -> mlua::Result<()> { panic!("a bug in a method") });
        methods.add_method("fine", |_, _, ()| Ok(42));
    }
}

#[test]
fn a_panic_in_a_userdata_method_is_a_lua_error() {
    let lua = Lua::new();
    lua.globals().set("tiny", Tiny).unwrap();
    let (ok, caught, traced_ok, traced, after): (bool, String, bool, String, i64) = lua
        .load(
            r#"
            local ok, err = pcall(tiny.boom, tiny)
            -- As Prosody runs handlers: under xpcall with a message handler.
            local traced_ok, traced = xpcall(function() return tiny:boom() end, function(e)
                return "handled: " .. tostring(e)
            end)
            return ok, tostring(err), traced_ok, tostring(traced), tiny:fine()
            "#,
        )
        .eval()
        .unwrap();
    assert!(!ok && !traced_ok);
    assert!(caught.contains("a bug in a method"), "{caught}");
    assert!(traced.starts_with("handled: ") && traced.contains("a bug in a method"), "{traced}");
    assert_eq!(after, 42, "the state is still usable");
}
