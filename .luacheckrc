-- luacheck for the Lua side, set up the way Prosody lints its own plugins: the module API is a
-- read-only global, with the callbacks a module may set (unload, save, restore) as the only
-- writes. Run: luacheck lua spec
codes = true
std = "max"
max_line_length = 150
read_globals = { "prosody" }

files["lua/"] = {
	read_globals = {
		-- The module instance and the parts of its API the modules use.
		"module.host",
		"module.path",
		"module.add_timer",
		"module.depends",
		"module.get_option",
		"module.hook",
		"module.hook_global",
		"module.log",
		"module.metric",
		"module.provides",
		"module.require",
		"module.send",
		"module.send_iq",
		"module.set_status",
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
