-- What mod_component_http and mod_rest share, as named steps each module calls at its top level
-- (see mod_component_http.lua and mod_rest.lua): load the native library, read the options,
-- start the client (hooks, descriptor watch, status, reload handover), report metrics, serve the
-- push endpoint. Loaded with module:require "component_http", it runs in the calling module's
-- environment: `module` is that module, and what this file keeps (the client, the pushes
-- waiting, what to do on unload) is that module's own.

local st = require "util.stanza";
local json = require "util.json";
local jid_bare = require "util.jid".bare;
local jid_split = require "util.jid".split;
local new_id = require "util.id".medium;
local server = require "net.server";
local now = require "util.time".now;
local timer = require "util.timer";

local native_name = "component_http_native";
local traceback = debug.traceback;

-- What module.unload does, in order: each step started adds its own.
local on_unload = {};
function module.unload()
	for _, step in ipairs(on_unload) do
		step();
	end
end

-- What module.save hands the next instance on reload: each step started adds its part.
local on_save = {};
function module.save()
	local saved = {};
	for _, step in ipairs(on_save) do
		step(saved);
	end
	return saved;
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

-- The bot's avatar, read and checked at load by read_options (a table from native.avatar, or false
-- when none is set); served by start_client's vCard and presence.
local avatar = false;

-- Every option of the module, read once and passed raw: the native side validates them and names
-- the one that is wrong. It also says which options exist, so the two lists cannot drift apart.
-- Returns the raw options (for start_client), the push endpoint's, validated, and the group
-- chat rooms (for start_rooms).
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
	local avatar_why;
	avatar, avatar_why = native.avatar(options, profile.native);
	if avatar == nil then
		refuse(avatar_why);
	elseif avatar then
		module:log("info", "The bot's avatar: %s, %dx%d, %d bytes, SHA-1 %s", avatar.type, avatar.width, avatar.height,
			avatar.size, avatar.sha1);
	end
	return options, push, rooms;
end

-- What was added to each counter so far, the native counts being totals; handed over on reload
-- together with the client, whose totals go on.
local reported = {};

-- Group chat rooms (XEP-0045): the native membership core, and what it asks of Prosody.
-- `room_core` is the native rooms object; the client's hooks hand it room messages, and what the
-- bot sends as presence.
local room_core;
local forwards_presence = false; -- set by start_client: occupants' presence is then POSTed
local held_pushes = {}; -- by room: pushes waiting for the bot to be in it
local room_timer = { generation = 0 };
local rooms_store;
local perform_room_actions, own_presence;

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
				module:log("error", "Prosody failed to send a room stanza (to=%s): %s", quote(action.stanza.attr.to), err);
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
					module:log("error", "Failed to handle a self-ping answer from %s: %s", room, err);
				end
			end
			module:send_iq(action.stanza, nil, 60):next(function (result)
				answered(result.stanza);
			end, function (err)
				answered(type(err) == "table" and err.context and err.context.stanza or nil);
			end);
		elseif kind == "open_room" then
			local room = action.room;
			module:send_iq(action.stanza):catch(function (err)
				module:log("warn", "Could not open the new room %s with its default configuration: %s", room,
					type(err) == "table" and (err.text or err.condition) or tostring(err));
			end);
		elseif kind == "store" then
			rooms_store = rooms_store or module:open_store();
			local ok, err = rooms_store:set(nil, { rooms = room_core:remembered() });
			if not ok then
				module:log("error", "Could not store the rooms joined by presence: %s", tostring(err));
			end
		elseif kind == "ready" or kind == "failed" then
			local held = held_pushes[action.room];
			held_pushes[action.room] = nil;
			for _, push in ipairs(held or {}) do
				push(action);
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
				module:log("error", "Room upkeep failed: %s", err);
			end
		end);
	end
end

-- A presence the bot sends (a webhook reply or a push), before it goes out: a presence to a room
-- joins it (made a join the room accepts) or leaves it.
function own_presence(stanza)
	local ok, changed, actions = pcall(room_core.own_presence, room_core, stanza);
	if not ok then
		module:log("error", "Could not track the bot's presence to %s: %s", quote(stanza.attr.to), changed);
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
		rooms_store = rooms_store or module:open_store();
		local stored = rooms_store:get(nil);
		if stored and type(stored.rooms) == "table" then
			perform_room_actions(room_core:load_remembered(stored.rooms));
		end
		perform_room_actions(room_core:start());
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
			module:log("error", "Could not leave the rooms: %s", err);
		end
	end);
end

-- The client: stanzas to the component are handed to it, the webhook's answers sent back when
-- the descriptor wakes us; taken over by the next instance on reload.
local function start_client(native, profile, options)
	local client, config_error = native.new(options, st.stanza_mt, profile.native, module.host);
	if not client then
		refuse(config_error);
	end

	-- `status_type, status_message`: the webhook's state changed (an outage began or ended).
	local function send_outcomes(stanzas, logs, status_type, status_message)
		if not stanzas then
			return;
		end
		if logs then
			for i = 1, #logs, 2 do
				module:log(logs[i], "%s", logs[i+1]);
			end
		end
		if status_type then
			module:set_status(status_type, status_message);
		end
		-- One stanza that Prosody cannot route (a module raising on it) must not cost the rest of
		-- the batch their delivery: each is sent under its own guard.
		for i = 1, #stanzas do
			if stanzas[i].name == "presence" and room_core then
				stanzas[i] = own_presence(stanzas[i]);
			end
			local ok, err = pcall(module.send, module, stanzas[i]);
			if not ok then
				local stanza = stanzas[i];
				module:log("error", "Prosody failed to route the webhook's answer (%s type=%s to=%s id=%s), "
					.."which is dropped; the webhook's other answers are sent. Check what the webhook "
					.."answers to such stanzas. The error: %s", quote(stanza.name), quote(stanza.attr.type),
					quote(stanza.attr.to), quote(stanza.attr.id), err);
			end
		end
	end

	local function deliver_ready()
		send_outcomes(client:drain());
	end

	-- Sends whatever the webhook has answered; called when the descriptor wakes us. (Also draining
	-- after every submit was measured: it made Prosody's main thread slower, 108 -> 176 µs per
	-- stanza, see BENCHMARKS.md.) The main loop calls watchfd callbacks without a pcall of its
	-- own: an error escaping here would unwind through the server loop, so catch and log it.
	local function on_wakeup()
		local ok, err = xpcall(deliver_ready, traceback);
		if not ok then
			module:log("error", "Failed to deliver webhook answers: %s", err);
		end
	end

	local watcher = server.watchfd(client:fd(), on_wakeup);

	-- An iq result or error that a module on this host is waiting for (module:send_iq) is theirs.
	-- Sent from a bare JID or the host, send_iq waits on "iq-result/<target>/<id>" events, which are
	-- fired only if nobody handles the iq first; sent from a full JID it hooks "iq/full" itself at
	-- priority 1, which is why iq/full is hooked below that.
	local host_events = prosody.hosts[module.host].events;
	local function awaited_by_another_module(stanza)
		local t = stanza.attr.type;
		if t ~= "result" and t ~= "error" then
			return false;
		end
		local to = stanza.attr.to or module.host;
		local target = (to == module.host and "host") or "bare";
		local handlers = host_events.get_handlers("iq-"..t.."/"..target.."/"..tostring(stanza.attr.id));
		return handlers ~= nil and #handlers > 0;
	end

	local function forward(event)
		local stanza = event.stanza;
		if stanza.name == "iq" and awaited_by_another_module(stanza) then
			return; -- leave it to mod_iq
		end
		local not_posted = client:submit(stanza, room_core);
		if not_posted then
			perform_room_actions(not_posted);
		end
		return true;
	end

	-- Whether the module answers vCard queries (XEP-0054): set below, where the iqs it answers
	-- are decided.
	local serves_vcard = false;

	-- The bot's available presence. While the module answers vCards, it says whether the bot has
	-- an avatar (XEP-0153): the avatar's hash, or an empty <photo/> for none, so clients do not
	-- ask; when the webhook answers them instead, it says nothing of one.
	local function online_presence(from, to)
		local presence = st.presence({ from = from, to = to });
		if serves_vcard then
			presence:tag("x", { xmlns = "vcard-temp:x:update" }):text_tag("photo", avatar and avatar.sha1 or nil):up();
		end
		return presence;
	end

	-- What the bot's presence says of its avatar: its hash, "" for none, false for nothing.
	local function current_photo()
		return serves_vcard and (avatar and avatar.sha1 or "");
	end

	-- Who has been sent the bot's available presence, by bot JID: told at once when a reload
	-- changes the avatar (XEP-0153 asks for a new presence then) rather than at their next login.
	-- Bounded: past the limit, a contact learns of a change at its next login, as it would anyway.
	local announced, announced_count, max_announced = {}, 0, 10000;
	local function note_announced(online, contact, sent)
		local contacts = announced[online];
		if sent and not (contacts and contacts[contact]) and announced_count < max_announced then
			contacts = contacts or {};
			announced[online], contacts[contact], announced_count = contacts, true, announced_count + 1;
		elseif not sent and contacts and contacts[contact] then
			contacts[contact], announced_count = nil, announced_count - 1;
		end
	end

	-- On reload: takes over who was told, and tells them again if the avatar changed.
	local function restore_presence(old)
		if not old then
			return;
		end
		announced, announced_count = old.announced, old.count;
		if old.photo == current_photo() or not serves_vcard then
			return;
		end
		for online, contacts in pairs(announced) do
			for contact in pairs(contacts) do
				module:send(online_presence(online, contact));
			end
		end
		module:log("info", "The avatar changed: sent the bot's presence with its new hash to %d contacts", announced_count);
	end

	table.insert(on_save, function (saved)
		saved.component_http_presence = { announced = announced, count = announced_count, photo = current_photo() };
	end);

	-- Always online, accepting every subscription, unless the webhook handles presence itself.
	local function handle_presence(event)
		local stanza = event.stanza;
		local to, from, t = stanza.attr.to, stanza.attr.from, stanza.attr.type;
		if not (to and from) then
			return true;
		end
		local contact = jid_bare(to);
		local online = contact.."/default";
		if t == "probe" then
			module:send(online_presence(online, from));
			note_announced(online, from, true);
		elseif t == "subscribe" then
			module:send(st.presence({ from = contact, to = from, type = "subscribed" }));
			module:send(online_presence(online, from));
			note_announced(online, from, true);
		elseif t == "unsubscribe" then
			module:send(st.presence({ from = online, to = from, type = "unavailable" }));
			note_announced(online, from, false);
		end
		return true;
	end

	-- Above mod_iq's iq/host handler (default priority 0), so the order is defined; iq/full below
	-- module:send_iq's own handler (priority 1), see awaited_by_another_module.
	local forwarded = {};
	for _, kind in ipairs(client:kinds()) do
		forwarded[kind] = true;
	end
	forwards_presence = forwarded.presence or false;
	for _, kind in ipairs({ "message", "presence", "iq" }) do
		local handler = forwarded[kind] and forward or (kind == "presence" and profile.answer_presence and handle_presence);
		if handler then
			for _, target in ipairs({ "host", "bare", "full" }) do
				module:hook(kind.."/"..target, handler, (kind == "iq" and target == "full") and 0.5 or 10);
			end
		end
	end

	-- disco#info (XEP-0030) to the component or a JID on it, when iqs are not POSTed: the bot's
	-- identity, named by the name option or else the JID asked, and the features the module
	-- implements. A query about a node is not answered here.
	if not forwarded.iq then
		local identity = client:identity();
		-- The name the bot goes by at the JID `to`.
		local function bot_name(to)
			local node, host = jid_split(to);
			return identity.name or node or host;
		end
		local function disco_info(event)
			local stanza = event.stanza;
			if stanza.tags[1].attr.node then
				return;
			end
			local reply = st.reply(stanza):query("http://jabber.org/protocol/disco#info")
				:tag("identity", { category = "client", type = "bot", name = bot_name(stanza.attr.to) }):up()
				:tag("feature", { var = "http://jabber.org/protocol/disco#info" }):up()
				:tag("feature", { var = "urn:xmpp:receipts" }):up()
				:tag("feature", { var = "vcard-temp" }):up();
			if identity.chat_states then
				reply:tag("feature", { var = "http://jabber.org/protocol/chatstates" }):up();
			end
			module:send(reply);
			return true;
		end
		module:hook("iq-get/host/http://jabber.org/protocol/disco#info:query", disco_info);
		module:hook("iq-get/bare/http://jabber.org/protocol/disco#info:query", disco_info);

		-- The bot's vCard (XEP-0054): its name, and its avatar when one is set. The same for
		-- every JID on the component: they are all the bot.
		local function vcard(event)
			local stanza = event.stanza;
			local reply = st.reply(stanza):tag("vCard", { xmlns = "vcard-temp" })
				:text_tag("FN", bot_name(stanza.attr.to));
			if avatar then
				reply:tag("PHOTO"):text_tag("TYPE", avatar.type):text_tag("BINVAL", avatar.base64):up();
			end
			module:send(reply);
			return true;
		end
		module:hook("iq-get/host/vcard-temp:vCard", vcard);
		module:hook("iq-get/bare/vcard-temp:vCard", vcard);
		serves_vcard = true;
	elseif avatar then
		module:log("warn", "The avatar is not served: iq stanzas are POSTed to the webhook, which answers vCard "
			.."queries itself (leave \"iq\" out of component_post_stanzas, or rest_stanzas, for the module to serve it)");
	end

	local public_url = options[profile.url_option]:gsub("//[^/@]*@", "//");
	module:log("info", "Posting %s stanzas to %s", table.concat(client:kinds(), ", "), public_url);
	module:set_status("info", "Posting to "..public_url);

	-- On reload the new instance takes over this one's pool (queue, requests in flight, order per
	-- sender, connections) instead of answering everything pending with an error.
	local handed_over = false;

	table.insert(on_save, function (saved)
		handed_over = true;
		saved.component_http_client, saved.component_http_reported = client, reported;
	end);

	function module.restore(saved)
		restore_presence(saved and saved.component_http_presence);
		local old = saved and saved.component_http_client;
		if not old then
			return;
		end
		watcher:close();
		reported = saved.component_http_reported or reported;
		send_outcomes(client:adopt(old));
		watcher = server.watchfd(client:fd(), on_wakeup);
		module:log("debug", "Took over the previous instance's %d pending stanzas", client:pending());
	end

	-- How long a handed-over pool waits to be adopted. A reload normally restores the new instance
	-- at once; if the new instance fails to load (say, an invalid new option), nobody adopts the
	-- pool, and this instance answers what it still holds rather than leave it unanswered.
	local adoption_grace = 2;

	table.insert(on_unload, function ()
		-- Stop watching before the descriptor is closed, then answer whatever is still pending.
		watcher:close();
		if not handed_over then
			send_outcomes(client:close());
			return;
		end
		timer.add_task(adoption_grace, function ()
			if client:fd() == nil then
				return; -- adopted: its stanzas are the new instance's now
			end
			module:log("warn", "The reloaded module did not take over; answering the %d pending stanzas", client:pending());
			local ok, err = xpcall(send_outcomes, traceback, client:close());
			if not ok then
				module:log("error", "Failed to answer pending stanzas: %s", err);
			end
		end);
	end);

	return client;
end

-- Observations replayed into Prosody's latency histogram per go: its public API takes one at a
-- time (about 1.4 µs each), so a large backlog is spread over main loop turns.
local replay_budget = 5000;

-- Statistics. The native side counts as it settles stanzas, off this thread; the figures are
-- handed to Prosody's statistics (mod_http_openmetrics and the other backends) only when Prosody
-- collects them.
local function report_metrics(native, client)
	-- Copies of the native bounds: Prosody appends its +Inf bucket to the table it is given.
	local bounds, given = {}, {};
	for i, bound in ipairs(native.latency_buckets) do
		bounds[i], given[i] = bound, bound;
	end
	local metrics = {
		posted = module:metric("counter", "posted", "", "Stanzas handed to the module, by kind", { "kind" });
		outcomes = module:metric("counter", "outcomes", "",
			"Stanza outcomes: reply, no_reply, or the condition of the error sent to the sender", { "outcome" });
		responses = module:metric("counter", "responses", "",
			"Webhook HTTP answers by status class; none: no valid answer", { "class" });
		retries = module:metric("counter", "retries", "", "Attempts after a stanza's first", {});
		latency = module:metric("histogram", "request_latency", "seconds",
			"Time from posting a stanza to the webhook's answer read, per attempt", {},
			{ buckets = given });
		queued = module:metric("gauge", "queued", "",
			"Stanzas waiting for a worker, held during an outage, or behind their sender's previous one", {});
		in_flight = module:metric("gauge", "in_flight", "", "Requests in flight", {});
		workers = module:metric("gauge", "workers", "", "Worker threads", {});
		endpoint_up = module:metric("gauge", "endpoint_up", "", "1 while the webhook answers, 0 during an outage", {});
	};

	local function add_total(family, name, label, total)
		local key = label and name.."/"..label or name;
		local delta = total - (reported[key] or 0);
		if delta > 0 then
			local m = label and family:with_labels(label) or family:with_labels();
			m:add(delta);
			reported[key] = total;
		end
	end

	-- The native side keeps the histogram's bucket counts and sum. What came since the last replay
	-- is replayed through the public API, the observations of a bucket at one value inside it,
	-- chosen so that the histogram's sum comes out as the native one; at most replay_budget at a
	-- time. Returns true if some are left for later.
	local function replay_latency(s)
		local buckets, seen = s.latency_buckets, reported.latency_buckets or {};
		if not buckets then
			return false; -- closed
		end
		local new, count, low_sum, high_sum, beyond = {}, 0, 0, 0, 0;
		for i = 1, #buckets do
			new[i] = buckets[i] - (seen[i] or 0);
			count = count + new[i];
			if bounds[i] then
				low_sum, high_sum = low_sum + new[i] * (bounds[i-1] or 0), high_sum + new[i] * bounds[i];
			else
				beyond = new[i]; -- past the last bound
			end
		end
		if count == 0 then
			return false;
		end
		local sum = s.latency_sum - (reported.latency_sum or 0);
		-- Every finite bucket's observations the same share of the way through it; those past the
		-- last bound take what remains of the sum.
		local share = 0.5;
		if beyond == 0 and high_sum > low_sum then
			share = math.max(1e-9, math.min(1, (sum - low_sum) / (high_sum - low_sum)));
		end
		local values, finite_sum = {}, 0;
		for i = 1, #bounds do
			local low = bounds[i-1] or 0;
			values[i] = math.min(bounds[i], low + share * (bounds[i] - low)); -- never past it by rounding
			finite_sum = finite_sum + new[i] * values[i];
		end
		if beyond > 0 then
			values[#buckets] = math.max(bounds[#bounds] * (1 + 1e-9), (sum - finite_sum) / beyond);
		end
		local m = metrics.latency:with_labels();
		local budget, replayed, replayed_sum = replay_budget, {}, reported.latency_sum or 0;
		for i = 1, #buckets do
			local n = math.min(new[i], budget);
			if n > 0 then
				for _ = 1, n do
					m:sample(values[i]);
				end
				replayed_sum, budget = replayed_sum + n * values[i], budget - n;
			end
			replayed[i] = (seen[i] or 0) + n;
		end
		local left = count > replay_budget;
		reported.latency_buckets = replayed;
		reported.latency_sum = left and replayed_sum or s.latency_sum; -- when done, the native sum exactly
		return left;
	end

	local replay_pending = false;
	local function replay_rest()
		local ok, left = xpcall(replay_latency, traceback, client:stats());
		if not ok then
			module:log("error", "Failed to report the latency histogram: %s", left);
			left = false;
		end
		replay_pending = left and true or false;
		return left and 0.01 or nil; -- a number: run again after that many seconds, other work in between
	end

	module:hook_global("stats-update", function ()
		local s = client:stats();
		if not s.posted then
			return; -- closed
		end
		for family, by_label in pairs({ posted = s.posted, outcomes = s.outcomes, responses = s.responses }) do
			for label, total in pairs(by_label) do
				add_total(metrics[family], family, label, total);
			end
		end
		add_total(metrics.retries, "retries", nil, s.retries);
		if not replay_pending and replay_latency(s) then
			replay_pending = true;
			module:add_timer(0, replay_rest);
		end
		metrics.queued:with_labels():set(s.queued);
		metrics.in_flight:with_labels():set(s.in_flight);
		metrics.workers:with_labels():set(s.workers);
		metrics.endpoint_up:with_labels():set(s.endpoint_up and 1 or 0);
	end);
end

-- The push endpoint: a bot sends stanzas of its own, over HTTP (mod_rest's POST /rest). An iq
-- waits for its answer, which comes back in the HTTP response.
local function serve_push(native, profile, push, client)
	local names = push.names;

	-- The responses to answer in JSON, when the endpoint answers as the request asks (mod_rest):
	-- decided once per request, as the answer may come later (an iq's, or a 503 on unload).
	local answers_json = setmetatable({}, { __mode = "k" });

	-- A refusal or failure, saying why: as text, or as {"error": why} to a request answered in JSON.
	local function plain(response, status, text)
		response.status_code = status;
		if answers_json[response] then
			response.headers.content_type = "application/json";
			return json.encode({ error = text });
		end
		response.headers.content_type = "text/plain; charset=utf-8";
		return text.."\n";
	end

	local function render(response, stanza)
		if profile.push_answers_json or answers_json[response] then
			response.headers.content_type = "application/json";
			return native.request_json(stanza, profile.native);
		end
		response.headers.content_type = "application/xmpp+xml";
		return tostring(stanza);
	end

	-- Pushed iqs waiting for their answers, by the id they carry on the wire: their HTTP responses,
	-- answered when the iq's answer comes, or with 503 when the module goes away.
	local waiting, waiting_count = {}, 0;

	-- The response of the iq `key` if it is still waiting, no longer counted as waiting.
	local function settle(key)
		local response = waiting[key];
		if response then
			waiting[key], waiting_count = nil, waiting_count - 1;
		end
		return response;
	end

	local function send_iq(stanza, response)
		if waiting_count >= push.max_iqs then
			response.headers.retry_after = "1";
			return plain(response, 503, ("%d pushed iqs are already waiting for their answers (%s): retry later")
				:format(push.max_iqs, names.max_iqs));
		end
		-- The iq goes out under an id of ours, so no client can reuse a waiting one (which Prosody's
		-- module:send_iq would refuse, and unhook the first); the answer gets the client's back.
		local client_id, key = stanza.attr.id, new_id();
		stanza.attr.id = key;
		waiting[key], waiting_count = response, waiting_count + 1;
		local function answer(reply)
			if not settle(key) then
				return; -- answered already, on unload
			end
			-- Under the promise's own xpcall an error would be lost, and the client never answered.
			local ok, body = pcall(function ()
				reply = st.clone(reply);
				reply.attr.id = client_id or key;
				return render(response, reply);
			end);
			if not ok then
				module:log("error", "Could not return the answer to a pushed iq (to=%s): %s", quote(stanza.attr.to), body);
				body = plain(response, 500, "The iq's answer could not be returned: "..tostring(body));
			end
			response:send(body);
		end
		module:send_iq(stanza, nil, push.iq_timeout):next(function (result)
			answer(result.stanza);
		end, function (err)
			local reply = type(err) == "table" and err.context and err.context.stanza;
			if reply then
				return answer(reply); -- an error the other side sent
			elseif not settle(key) then
				return;
			elseif type(err) == "table" and err.condition == "remote-server-timeout" then
				response:send(plain(response, 504, ("No answer to the iq within %g s (%s)")
					:format(push.iq_timeout, names.iq_timeout)));
			else
				module:log("error", "Prosody failed to send a pushed iq (to=%s): %s", quote(stanza.attr.to), tostring(err));
				response:send(plain(response, 500, "Prosody could not send the iq: "..tostring(err)));
			end
		end);
		return true; -- answered when the iq's answer comes
	end

	-- Unloaded or reloaded: the waits end with the module's hooks; say so rather than never answer.
	table.insert(on_unload, function ()
		local keys = {};
		for key in pairs(waiting) do
			table.insert(keys, key);
		end
		if #keys > 0 then
			module:log("info", "Answering %d pushed iqs still waiting with 503: the module is unloading", #keys);
		end
		for _, key in ipairs(keys) do
			local response = settle(key);
			response.headers.retry_after = "1";
			response:send(plain(response, 503, "The module was unloaded or reloaded before the iq's answer came: retry"));
		end
	end);

	-- Sends a pushed stanza, and the messages that go right after it (a file's caption, say; from
	-- the same sender); the push's answer.
	local function send_pushed(stanza, response, after)
		-- A streamed answer is being written to this conversation: the messages follow it.
		local held = client and client:hold(stanza);
		if held == "full" then
			response.headers.retry_after = "1";
			return plain(response, 503, "too many messages wait for a streamed answer to this chat to end ("
				..names.queue_size.."): retry");
		elseif held == "held" then
			for _, message in ipairs(after or {}) do
				message.attr.from = stanza.attr.from;
				client:hold(message);
			end
			response.status_code = 202;
			return render(response, stanza);
		end
		local ok, err = pcall(module.send, module, stanza);
		if not ok then
			module:log("error", "Prosody failed to route a pushed %s (type=%s to=%s): %s", stanza.name,
				quote(stanza.attr.type), quote(stanza.attr.to), tostring(err));
			return plain(response, 500, "Prosody could not route the stanza: "..tostring(err));
		end
		for i, message in ipairs(after or {}) do
			message.attr.from = stanza.attr.from;
			ok, err = pcall(module.send, module, message);
			if not ok then
				module:log("error", "Prosody failed to route message %d of a push (to=%s): %s", i + 1,
					quote(message.attr.to), tostring(err));
				return plain(response, 500, ("Message %d of %d could not be routed: %s"):format(i + 1, #after + 1,
					tostring(err)));
			end
		end
		response.status_code = 202;
		return render(response, stanza);
	end

	-- A groupchat message to a room: said at once when the bot is in it, else once it has joined
	-- (the push waits), or refused with the status the room's answer means.
	local pushes_waiting = {};
	local function push_to_room(stanza, response, after)
		-- The push's from defaults to the host: then the room's own occupant JID says it.
		local given_from = stanza.attr.from ~= module.host and stanza.attr.from or nil;
		local route, detail, message = room_core:route_push(stanza.attr.to, given_from);
		if route == "send" then
			stanza.attr.from = detail;
			return send_pushed(stanza, response, after);
		elseif route ~= "wait" then
			return plain(response, detail, message);
		end
		local room = stanza.attr.to;
		held_pushes[room] = held_pushes[room] or {};
		pushes_waiting[response] = true;
		table.insert(held_pushes[room], function (action)
			if not pushes_waiting[response] then
				return; -- answered already, on unload
			end
			pushes_waiting[response] = nil;
			if action.kind == "failed" then
				return response:send(plain(response, action.status, room..": "..action.message));
			end
			stanza.attr.from = action.from;
			response:send(send_pushed(stanza, response, after));
		end);
		perform_room_actions(detail);
		return true; -- answered when the bot is in the room, or cannot be
	end

	table.insert(on_unload, function ()
		for response in pairs(pushes_waiting) do
			pushes_waiting[response] = nil;
			response.headers.retry_after = "1";
			response:send(plain(response, 503, "The module was unloaded or reloaded before the bot was in the room: retry"));
		end
	end);

	local function handle_push(event)
		local request, response = event.request, event.response;
		if profile.push_negotiates
			and native.push_answer_format(request.headers.content_type, request.headers.accept) == "json" then
			answers_json[response] = true;
		end
		local given = request.headers.authorization;
		-- Prosody turns a bare "Authorization:" into "": never a match (nor are empty credentials,
		-- refused at load).
		if not (given and given ~= "" and native.same_secret(given, push.credentials)) then
			response.headers.www_authenticate = "Bearer";
			return plain(response, 401, "Authorization must be the configured credentials ("..names.credentials..")");
		end
		-- With streaming_uploads, Prosody calls the handler at the request's head already when the body
		-- is declared larger than http_max_content_size, and closes the connection after the answer,
		-- the body unread (without it, such a request is answered with a redirect).
		if request.partial then
			return plain(response, 413, "the stanza is larger than Prosody reads (http_max_content_size)");
		end
		-- Prosody's HTTP server does not read chunked request bodies (0.12 and 13): the body would
		-- look empty, and the chunks like a next request.
		if request.headers.transfer_encoding and (request.body or "") == "" then
			return plain(response, 411, "send the stanza with a Content-Length: Prosody does not read chunked bodies");
		end
		local stanza, status, why, after = native.push(request.body or "", request.headers.content_type, module.host,
			profile.push_accepts_json, push.max_size, st.stanza_mt, profile.native);
		if not stanza then
			module:log("debug", "Refused a push with HTTP %d: %s", status, why);
			return plain(response, status, why);
		end
		if stanza.name == "iq" then
			local t = stanza.attr.type;
			if t == "get" or t == "set" then
				return send_iq(stanza, response);
			elseif t ~= "result" and t ~= "error" then
				return plain(response, 400, "an iq's type must be get, set, result or error");
			end
		end
		if stanza.name == "message" and stanza.attr.type == "groupchat" and room_core then
			return push_to_room(stanza, response, after);
		elseif stanza.name == "presence" and room_core then
			stanza = own_presence(stanza);
		end
		return send_pushed(stanza, response, after);
	end

	module:depends("http");
	module:provides("http", {
		default_path = profile.push_path;
		streaming_uploads = true; -- see request.partial above: refuse a body too large at its head
		route = { ["POST"] = handle_push; ["POST /*"] = handle_push };
	});
end

return {
	load_native = load_native;
	read_options = read_options;
	start_rooms = start_rooms;
	start_client = start_client;
	report_metrics = report_metrics;
	serve_push = serve_push;
};
