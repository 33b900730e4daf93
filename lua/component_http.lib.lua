-- The core both modules share (see mod_component_http.lua and mod_rest.lua), laid out like
-- Prosody's mod_muc: this file loads the native library, reads the options, keeps the
-- save/restore/unload registries; the features are libraries of their own, each hooking its own
-- events and given what it needs: component_http_rooms (group chats), component_http_client
-- (stanzas to the webhook and its answers back), component_http_identity (the bot's presence,
-- disco#info, vCard), component_http_metrics (Prosody's statistics) and component_http_push
-- (the HTTP push endpoint). Loaded with module:require, every file runs in the calling module's environment:
-- `module` is that module, and what they keep is that module's own.

local st = require "util.stanza";

local native_name = "component_http_native";

-- What this file gives the module and the feature libraries (filled in at the end).
local shim_api = {};

-- What module.unload does, in order: each feature started adds its own step.
local on_unload = {};
function module.unload()
	for _, step in ipairs(on_unload) do
		step();
	end
end

-- What module.save hands the next instance on reload: each feature started adds its part.
local on_save = {};
function module.save()
	local saved = {};
	for _, step in ipairs(on_save) do
		step(saved);
	end
	return saved;
end

-- What module.restore does with what the previous instance saved, in the order features started.
local on_restore = {};
function module.restore(saved)
	for _, step in ipairs(on_restore) do
		step(saved or {});
	end
end

-- Text from outside (a webhook, a push) quoted for a log line: one line, control characters escaped.
local function quote(text)
	return (("%q"):format(tostring(text)):gsub("\\\n", "\\n"));
end

-- Logs why the module does not start, and stops loading it.
local function refuse(why)
	module:log("error", "Not starting: %s", why);
	error(why);
end

-- LuaRocks puts this file in <tree>/share/lua/<ver>/ and the library in <tree>/lib/lua/<ver>/.
-- Prosody adds the first to its paths for installer_plugin_path but not the second (0.12 and 13
-- check package.path where they mean package.cpath), so look for the library ourselves.
local function load_native()
	if package.loaded[native_name] then
		return package.loaded[native_name];
	end
	local candidates = {};
	local dir = module.path and module.path:match("^(.*)[/\\][^/\\]+$");
	if dir then
		table.insert(candidates, dir.."/"..native_name..".so");
		local tree, lua_version = dir:match("^(.*)/share/lua/([^/]+)$");
		if tree then
			table.insert(candidates, tree.."/lib/lua/"..lua_version.."/"..native_name..".so");
		end
	end
	local on_cpath = package.searchpath(native_name, package.cpath);
	if on_cpath then
		table.insert(candidates, on_cpath);
	end
	local problems = {};
	for _, path in ipairs(candidates) do
		local file = io.open(path, "rb");
		if file then
			file:close();
			local open, err = package.loadlib(path, "luaopen_"..native_name);
			if open then
				package.loaded[native_name] = open();
				return package.loaded[native_name];
			end
			table.insert(problems, path..": "..tostring(err));
		end
	end
	error(("could not load %s.so (looked next to %s, in its LuaRocks tree and on package.cpath)%s"):format(
		native_name, tostring(module.path), #problems > 0 and ": "..table.concat(problems, "; ") or ""));
end

-- The module's profile: the names the native side owns for it (`native`, the profile's name;
-- `url_option`; `push_path`; `stanzas_option`), with the module's own choices of behaviour
-- (`flags`: push_accepts_json, push_answers_json, push_negotiates, answer_presence) added.
local function module_profile(native, name, flags)
	local names = native.profile(name);
	for key, value in pairs(flags) do
		names[key] = value;
	end
	return names;
end

-- Every option of the module, read once and passed raw: the native side validates them and names
-- the one that is wrong. It also says which options exist, so the two lists cannot drift apart.
-- Returns the raw options (for the client), the push endpoint's, validated, the group chat rooms
-- (for start_rooms), and the bot's avatar (a table from native.avatar, or false when none is set).
local function read_options(native, profile)
	local options = {};
	for _, name in ipairs(native.option_names(profile.native)) do
		options[name] = module:get_option(name);
	end
	local push, why = native.push_options(options, profile.native);
	if not push then
		refuse(why);
	end
	local rooms, rooms_why = native.rooms(options, profile.native, module.host, st.stanza_mt);
	if not rooms then
		refuse(rooms_why);
	end
	local avatar, avatar_why = native.avatar(options, profile.native);
	if avatar == nil then
		refuse(avatar_why);
	elseif avatar then
		module:log("info", "The bot's avatar: %s, %dx%d, %d bytes, SHA-1 %s", avatar.type, avatar.width, avatar.height,
			avatar.size, avatar.sha1);
	end
	return options, push, rooms, avatar;
end

-- The group chat rooms, started with the native rooms object read_options returns: see
-- component_http_rooms.lib.lua for what the feature libraries get back.
local function start_rooms(rooms)
	return module:require "component_http_rooms".start(shim_api, rooms);
end

-- What the feature libraries register with this file: a step of module.save, module.restore
-- and module.unload.
local registries = {
	on_save = function (step) table.insert(on_save, step); end;
	on_restore = function (step) table.insert(on_restore, step); end;
	on_unload = function (step) table.insert(on_unload, step); end;
};

shim_api.load_native = load_native;
shim_api.profile = module_profile;
shim_api.read_options = read_options;
shim_api.start_rooms = start_rooms;
shim_api.registries = registries;
shim_api.quote = quote;
shim_api.refuse = refuse;
return shim_api;
