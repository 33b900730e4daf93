-- Group chat rooms (XEP-0045): the native membership core (src/room/), and what it asks of
-- Prosody. The core decides; this file performs its actions (send, log, self-ping, open a new
-- room, store the remembered rooms, resume held pushes) and arms the timer for its next tick.
-- Started by the module with the shared core (component_http.lib.lua) and the native rooms
-- object read_options returns; what `start` returns is what the client and push libraries use.

local now = require "util.time".now;

local traceback = debug.traceback;

-- The rooms of one module: `core`, the native object, and what this file keeps beside it.
local rooms_mt = {};
rooms_mt.__index = rooms_mt;

-- Runs `step` (a function returning actions) and performs them; a failure is logged as `what`
-- failing, never raised into Prosody's timers or promise callbacks.
function rooms_mt:perform_guarded(what, step)
	local ok, err = xpcall(function () self:perform(step()); end, traceback);
	if not ok then
		module:log("error", "%s failed: %s", what, self.quote(err));
	end
end

-- A room hook runs inside Prosody's routing (a room's broadcast of a join reaches the bot there):
-- an error would stop what routed the stanza, the broadcast to the occupants after the bot
-- included. Each hook runs guarded; a failure is logged, and `on_error` is what the hook returns
-- then (nil: left to the other handlers).
function rooms_mt:guarded(what, handler, on_error)
	local quote = self.quote;
	return function (event)
		local ok, result = xpcall(handler, traceback, event);
		if ok then
			return result;
		end
		local stanza = event.stanza;
		module:log("error", "The rooms could not handle %s from %s: %s", what,
			quote(stanza and stanza.attr.from), quote(result));
		return on_error;
	end
end

-- Presence from rooms goes to the core first, once it knows a room (a component without rooms
-- hooks nothing for them).
function rooms_mt:hook_room_presence()
	local function on_presence(event)
		local actions, known = self.core:presence(event.stanza);
		if actions then
			self:perform(actions);
			return true;
		end
		if known and not self.forwards_presence then
			return true; -- another occupant's presence: nothing to answer
		end
	end
	-- Below every other handler: a room message nothing took is not left to Prosody, whose
	-- service-unavailable error would get the bot kicked from the room.
	local function on_message(event)
		local actions = self.core:message(event.stanza);
		if actions then
			self:perform(actions);
			return true;
		end
	end
	-- A message that failed is dropped (true): left to Prosody, it would be answered with an
	-- error, and a room kicks an occupant whose JID answers with one.
	on_presence = self:guarded("a presence", on_presence, nil);
	on_message = self:guarded("a message", on_message, true);
	for _, target in ipairs({ "host", "bare", "full" }) do
		module:hook("presence/"..target, on_presence, 20);
		module:hook("message/"..target, on_message, -100);
	end
	self.presence_hooked = true;
end

-- What each action the core returns does (see src/room/lua.rs).
local perform_action = {};
function perform_action.send(rooms, action)
	local ok, err = pcall(module.send, module, action.stanza);
	if not ok then
		module:log("error", "Prosody failed to send a room stanza (to=%s): %s", rooms.quote(action.stanza.attr.to), rooms.quote(err));
	end
end
function perform_action.log(_, action)
	module:log(action.level, "%s", action.message);
end
function perform_action.self_ping(rooms, action)
	local room, id = action.room, action.id;
	local function answered(stanza)
		if module.loaded == false then
			return; -- reloaded or unloaded meanwhile
		end
		rooms:perform_guarded("Handling a self-ping answer from "..rooms.quote(room), function ()
			return rooms.core:ping_answer(room, id, stanza);
		end);
	end
	module:send_iq(action.stanza, nil, 60):next(function (result)
		answered(result.stanza);
	end, function (err)
		answered(type(err) == "table" and err.context and err.context.stanza or nil);
	end);
end
function perform_action.open_room(rooms, action)
	local room, id = action.room, action.id;
	-- Answered or not, the iq no longer holds one of the rooms' places in send_iq's table.
	local function settled()
		if module.loaded == false then
			return; -- reloaded or unloaded meanwhile
		end
		rooms:perform_guarded("Handling the answer to opening "..rooms.quote(room), function ()
			return rooms.core:open_room_answer(id);
		end);
	end
	-- The error's text is the room's (or its server's): quoted like any text from outside.
	module:send_iq(action.stanza, nil, action.timeout):next(settled, function (err)
		module:log("warn", "Could not open the new room %s with its default configuration: %s", rooms.quote(room),
			rooms.quote(type(err) == "table" and (err.text or err.condition) or err));
		settled();
	end);
end
function perform_action.store(rooms)
	rooms.store = rooms.store or module:open_store();
	local ok, err = rooms.store:set(nil, { rooms = rooms.core:remembered() });
	if not ok then
		module:log("error", "Could not store the rooms joined by presence: %s", rooms.quote(err));
	end
end
function perform_action.ready(rooms, action)
	local held = rooms.held_pushes[action.room];
	rooms.held_pushes[action.room] = nil;
	-- One push whose answer fails must not keep the others waiting.
	for _, push in ipairs(held or {}) do
		local ok, err = xpcall(push, traceback, action);
		if not ok then
			module:log("error", "Could not answer a push held for %s: %s", rooms.quote(action.room), rooms.quote(err));
		end
	end
end
perform_action.failed = perform_action.ready;

-- The timer for the core's next tick; an earlier one armed stays, a later one is superseded.
function rooms_mt:arm_timer()
	local delay = self.core:next_tick();
	local timer = self.timer;
	if not delay or (timer.at and timer.at <= now() + delay) then
		return;
	end
	timer.generation = timer.generation + 1;
	local generation = timer.generation;
	timer.at = now() + delay;
	module:add_timer(delay, function ()
		if generation ~= timer.generation then
			return; -- superseded by an earlier one
		end
		timer.at = nil;
		self:perform_guarded("Room upkeep", function () return self.core:tick(); end);
	end);
end

-- Performs what the room core asks, then sets the timer for its next tick.
function rooms_mt:perform(actions)
	if not self.presence_hooked and self.core:count() > 0 then
		self:hook_room_presence();
	end
	for _, action in ipairs(actions) do
		local handler = perform_action[action.kind];
		if handler then
			handler(self, action);
		end
	end
	self:arm_timer();
end

-- A presence the bot sends (a webhook reply or a push), before it goes out: a presence to a room
-- joins it (made a join the room accepts) or leaves it.
function rooms_mt:own_presence(stanza)
	local ok, changed, actions = pcall(self.core.own_presence, self.core, stanza);
	if not ok then
		module:log("error", "Could not track the bot's presence to %s: %s", self.quote(stanza.attr.to), self.quote(changed));
		return stanza;
	end
	self:perform(actions);
	return changed;
end

-- Configured and remembered rooms are joined once the server has started (at once on a load
-- after that); a reload hands the membership over, without leaving or joining.
function rooms_mt:join_all()
	self:perform_guarded("Joining the rooms", function ()
		self.store = self.store or module:open_store();
		local stored = self.store:get(nil);
		if stored and type(stored.rooms) == "table" then
			self:perform(self.core:load_remembered(stored.rooms));
		end
		return self.core:start();
	end);
end

-- Starts the rooms and returns them as the feature libraries use them: `core`, the native
-- object; `perform(actions)`; `own_presence(stanza)`, the presence the bot sends made what the
-- rooms need; `hold_push(room, resume)`, a push waiting for the bot to be in `room`, resumed
-- with the room's "ready" or "failed" action; `forward_presence(yes)`, whether occupants'
-- presence is POSTed (the client's kinds say).
local function start(shim, core)
	local self = setmetatable({
		core = core;
		quote = shim.quote;
		forwards_presence = false;
		held_pushes = {}; -- by room: pushes waiting for the bot to be in it
		timer = { generation = 0 };
		presence_hooked = false;
	}, rooms_mt);
	if core:count() > 0 then
		self:hook_room_presence();
	end
	local saved = module.saved_state and module.saved_state.component_http_rooms;
	if saved then
		self:perform(core:adopt(saved));
	elseif prosody.start_time then
		self:join_all();
	else
		module:hook_global("server-started", function () self:join_all(); end);
	end

	shim.registries.on_save(function (state)
		state.component_http_rooms = core;
	end);
	shim.registries.on_unload(function ()
		if module.reloading then
			return; -- the next instance carries on in the rooms
		end
		local ok, err = pcall(self.perform, self, core:leave_all());
		if not ok then
			module:log("error", "Could not leave the rooms: %s", self.quote(err));
		end
	end);

	return {
		core = core;
		perform = function (actions) self:perform(actions); end;
		own_presence = function (stanza) return self:own_presence(stanza); end;
		hold_push = function (room, resume)
			self.held_pushes[room] = self.held_pushes[room] or {};
			table.insert(self.held_pushes[room], resume);
		end;
		forward_presence = function (yes)
			self.forwards_presence = yes;
		end;
	};
end

return { start = start };
