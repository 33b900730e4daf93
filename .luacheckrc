-- luacheck's settings for this repository (`luacheck lua spec`, run by scripts/test), laid out
-- like Prosody's own: the module files see Prosody's module environment, the specs busted's.

codes = true
-- Lua 5.4 (Debian's Prosody) is the reference; code that must also run on 5.1-5.3 and LuaJIT
-- guards the differences itself.
std = "lua54c"
max_line_length = 150

read_globals = {
	"prosody",
}

-- Prosody modules (mod_*.lua) and the libraries they load with module:require run with
-- `module` (the module API) in their environment: a read-only global, with the callbacks a
-- module may set (unload, save, restore) as the only writes.
files["lua/"] = {
	read_globals = {
		-- The module instance and the parts of its API the modules use.
		"module.host",
		"module.path",
		"module.add_timer",
		"module.depends",
		"module.fire_event",
		"module.get_host_type",
		"module.get_option",
		"module.hook",
		"module.hook_global",
		"module.loaded",
		"module.log",
		"module.metric",
		"module.name",
		"module.open_store",
		"module.provides",
		"module.reloading",
		"module.require",
		"module.saved_state",
		"module.send",
		"module.send_iq",
		"module.set_status",
		"module.unhook",
	};
	globals = {
		"module.unload",
		"module.save",
		"module.restore",
	};
}

files["spec/"] = {
	std = "+busted";
}
-- Run by a bare interpreter on every Lua (5.1 and LuaJIT included), not by busted.
files["spec/native_smoke.lua"] = {
	std = "max";
}
