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
-- `module` (the module API) in their environment.
files["lua/"] = {
	allow_defined_top = true;
	read_globals = {
		"module",
	};
	globals = {
		-- What a module sets for Prosody to call: on unload, and to hand state over on reload.
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
