-- The core both modules share (see mod_component_http.lua and mod_rest.lua), laid out like
-- Prosody's mod_muc: this file loads the native library, reads the options, keeps the
-- save/restore/unload registries and the group chat rooms; the features are libraries of their
-- own, each hooking its own events and given what it needs: component_http_client (stanzas to
-- the webhook and its answers back), component_http_identity (the bot's presence, disco#info,
-- vCard), component_http_metrics (Prosody's statistics) and component_http_push (the HTTP push
-- endpoint). Loaded with module:require, every file runs in the calling module's environment:
-- `module` is that module, and what they keep is that module's own.

local st = require "util.stanza";
local now = require "util.time".now;

local native_name = "component_http_native";
local traceback = debug.traceback;

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

-- Group chat rooms (XEP-0045): the native membership core, and what it asks of Prosody.
-- `room_core` is the native rooms object; the client's hooks hand it room messages, and what the
-- bot sends as presence.
local room_core;
local forwards_presence = false; -- set by start_client: occupants' presence is then POSTed
local held_pushes = {}; -- by room: pushes waiting for the bot to be in it
local room_timer = { generation = 0 };
local rooms_store;
local perform_room_actions, own_presence;

-- A room hook runs inside Prosody's routing (a room's broadcast of a join reaches the bot there):
-- an error would stop what routed the stanza, the broadcast to the occupants after the bot
-- included. Each hook runs guarded; a failure is logged, and `on_error` is what the hook returns
-- then (nil: left to the other handlers).
local function guarded(what, handler, on_error)
	return function (event)
		local ok, result = xpcall(handler, traceback, event);
		if ok then
			return result;
		end
		local stanza = event.stanza;
		module:log("error", "The rooms could not handle %s from %s: %s", what, quote(stanza and stanza.attr.from), quote(result));
		return on_error;
	end
end

-- Presence from rooms goes to the core first, once it knows a room (a component without rooms
-- hooks nothing for them).
local presence_hooked = false;
local function hook_room_presence()
	local function on_presence(event)
		local actions, known = room_core:presence(event.stanza);
		if actions then
			perform_room_actions(actions);
			return true;
		end
		if known and not forwards_presence then
			return true; -- another occupant's presence: nothing to answer
		end
	end
	-- Below every other handler: a room message nothing took is not left to Prosody, whose
	-- service-unavailable error would get the bot kicked from the room.
	local function on_message(event)
		local actions = room_core:message(event.stanza);
		if actions then
			perform_room_actions(actions);
			return true;
		end
	end
	-- A message that failed is dropped (true): left to Prosody, it would be answered with an
	-- error, and a room kicks an occupant whose JID answers with one.
	on_presence = guarded("a presence", on_presence, nil);
	on_message = guarded("a message", on_message, true);
	for _, target in ipairs({ "host", "bare", "full" }) do
		module:hook("presence/"..target, on_presence, 20);
		module:hook("message/"..target, on_message, -100);
	end
	presence_hooked = true;
end

-- Performs what the room core asks (see src/room/lua.rs), then sets the timer for its next tick.
function perform_room_actions(actions)
	if not presence_hooked and room_core:count() > 0 then
		hook_room_presence();
	end
	for _, action in ipairs(actions) do
		local kind = action.kind;
		if kind == "send" then
			local ok, err = pcall(module.send, module, action.stanza);
			if not ok then
				module:log("error", "Prosody failed to send a room stanza (to=%s): %s", quote(action.stanza.attr.to), quote(err));
			end
		elseif kind == "log" then
			module:log(action.level, "%s", action.message);
		elseif kind == "self_ping" then
			local room, id = action.room, action.id;
			local function answered(stanza)
				if module.loaded == false then
					return; -- reloaded or unloaded meanwhile
				end
				local ok, err = xpcall(function ()
					perform_room_actions(room_core:ping_answer(room, id, stanza));
				end, traceback);
				if not ok then
					module:log("error", "Failed to handle a self-ping answer from %s: %s", quote(room), quote(err));
				end
			end
			module:send_iq(action.stanza, nil, 60):next(function (result)
				answered(result.stanza);
			end, function (err)
				answered(type(err) == "table" and err.context and err.context.stanza or nil);
			end);
		elseif kind == "open_room" then
			local room, id = action.room, action.id;
			-- Answered or not, the iq no longer holds one of the rooms' places in send_iq's table.
			local function settled()
				if module.loaded == false then
					return; -- reloaded or unloaded meanwhile
				end
				local ok, err = xpcall(function ()
					perform_room_actions(room_core:open_room_answer(id));
				end, traceback);
				if not ok then
					module:log("error", "Failed to handle the answer to opening %s: %s", quote(room), quote(err));
				end
			end
			-- The error's text is the room's (or its server's): quoted like any text from outside.
			module:send_iq(action.stanza, nil, action.timeout):next(settled, function (err)
				module:log("warn", "Could not open the new room %s with its default configuration: %s", quote(room),
					quote(type(err) == "table" and (err.text or err.condition) or err));
				settled();
			end);
		elseif kind == "store" then
			rooms_store = rooms_store or module:open_store();
			local ok, err = rooms_store:set(nil, { rooms = room_core:remembered() });
			if not ok then
				module:log("error", "Could not store the rooms joined by presence: %s", quote(err));
			end
		elseif kind == "ready" or kind == "failed" then
			local held = held_pushes[action.room];
			held_pushes[action.room] = nil;
			-- One push whose answer fails must not keep the others waiting.
			for _, push in ipairs(held or {}) do
				local ok, err = xpcall(push, traceback, action);
				if not ok then
					module:log("error", "Could not answer a push held for %s: %s", quote(action.room), quote(err));
				end
			end
		end
	end
	-- The timer for the next tick; an earlier one armed stays, a later one is superseded.
	local delay = room_core:next_tick();
	if delay and not (room_timer.at and room_timer.at <= now() + delay) then
		room_timer.generation = room_timer.generation + 1;
		local generation = room_timer.generation;
		room_timer.at = now() + delay;
		module:add_timer(delay, function ()
			if generation ~= room_timer.generation then
				return; -- superseded by an earlier one
			end
			room_timer.at = nil;
			local ok, err = xpcall(function () perform_room_actions(room_core:tick()); end, traceback);
			if not ok then
				module:log("error", "Room upkeep failed: %s", quote(err));
			end
		end);
	end
end

-- A presence the bot sends (a webhook reply or a push), before it goes out: a presence to a room
-- joins it (made a join the room accepts) or leaves it.
function own_presence(stanza)
	local ok, changed, actions = pcall(room_core.own_presence, room_core, stanza);
	if not ok then
		module:log("error", "Could not track the bot's presence to %s: %s", quote(stanza.attr.to), quote(changed));
		return stanza;
	end
	perform_room_actions(actions);
	return changed;
end

-- The rooms: configured and remembered rooms are joined once the server has started (at once
-- on a load after that); a reload hands the membership over, without leaving or joining.
local function start_rooms(rooms)
	room_core = rooms;
	if room_core:count() > 0 then
		hook_room_presence();
	end

	local saved = module.saved_state and module.saved_state.component_http_rooms;
	local function start()
		local ok, err = xpcall(function ()
			rooms_store = rooms_store or module:open_store();
			local stored = rooms_store:get(nil);
			if stored and type(stored.rooms) == "table" then
				perform_room_actions(room_core:load_remembered(stored.rooms));
			end
			perform_room_actions(room_core:start());
		end, traceback);
		if not ok then
			module:log("error", "Could not join the rooms: %s", quote(err));
		end
	end
	if saved then
		perform_room_actions(room_core:adopt(saved));
	elseif prosody.start_time then
		start();
	else
		module:hook_global("server-started", start);
	end

	table.insert(on_save, function (state)
		state.component_http_rooms = room_core;
	end);
	table.insert(on_unload, function ()
		if module.reloading then
			return; -- the next instance carries on in the rooms
		end
		local ok, err = pcall(perform_room_actions, room_core:leave_all());
		if not ok then
			module:log("error", "Could not leave the rooms: %s", quote(err));
		end
	end);
end

-- Starts the rooms (`rooms`, the native rooms object read_options returns), and returns them as
-- the feature libraries use them: `core`, the native object; `perform(actions)`;
-- `own_presence(stanza)`, the presence the bot sends made what the rooms need;
-- `hold_push(room, resume)`, a push waiting for the bot to be in `room`, resumed with the room's
-- "ready" or "failed" action; `forward_presence(yes)`, whether occupants' presence is POSTed (the
-- client's kinds say).
local function rooms_for_features(rooms)
	start_rooms(rooms);
	return {
		core = room_core;
		perform = perform_room_actions;
		own_presence = own_presence;
		hold_push = function (room, resume)
			held_pushes[room] = held_pushes[room] or {};
			table.insert(held_pushes[room], resume);
		end;
		forward_presence = function (yes)
			forwards_presence = yes;
		end;
	};
end

-- What the feature libraries register with this file: a step of module.save, module.restore
-- and module.unload.
local registries = {
	on_save = function (step) table.insert(on_save, step); end;
	on_restore = function (step) table.insert(on_restore, step); end;
	on_unload = function (step) table.insert(on_unload, step); end;
};

return {
	load_native = load_native;
	profile = module_profile;
	read_options = read_options;
	start_rooms = rooms_for_features;
	registries = registries;
	quote = quote;
	refuse = refuse;
};
