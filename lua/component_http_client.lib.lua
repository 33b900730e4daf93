-- The client: stanzas to the component are handed to the native client, which POSTs them off
-- this thread; the webhook's answers are sent back when its descriptor wakes Prosody. On reload
-- the next instance takes the pool over. Started by the module with what it needs: the shared
-- core (component_http.lib.lua), the native library, the profile, the raw options and the rooms.

local st = require "util.stanza";
local server = require "net.server";
local timer = require "util.timer";

local traceback = debug.traceback;

-- How long a handed-over pool waits to be adopted. A reload normally restores the new instance
-- at once; if the new instance fails to load (say, an invalid new option), nobody adopts the
-- pool, and the old instance answers what it still holds rather than leave it unanswered.
local adoption_grace = 2;

-- Sends one answer: a file to upload, or a message waiting behind one to the same
-- conversation, is the uploads' to send.
local function send_one(uploads, stanza)
	if uploads and uploads.deliver(stanza) then
		return;
	end
	module:send(stanza);
end

-- Sends a batch of outcomes from the native client (`stanzas, logs, status_type,
-- status_message`, as drain, close and adopt return them); the status when the webhook's state
-- changed (an outage began or ended).
local function send_outcomes(shim, rooms, stanzas, logs, status_type, status_message)
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
	local quote = shim.quote;
	local uploads = shim.uploads;
	for i = 1, #stanzas do
		if stanzas[i].name == "presence" and rooms.core then
			stanzas[i] = rooms.own_presence(stanzas[i]);
		end
		local ok, err = pcall(send_one, uploads, stanzas[i]);
		if not ok then
			local stanza = stanzas[i];
			module:log("error", "Prosody failed to route the webhook's answer (%s type=%s to=%s id=%s), "
				.."which is dropped; the webhook's other answers are sent. Check what the webhook "
				.."answers to such stanzas. The error: %s", quote(stanza.name), quote(stanza.attr.type),
				quote(stanza.attr.to), quote(stanza.attr.id), err);
		end
	end
end

-- An iq result or error that a module on this host is waiting for (module:send_iq) is theirs.
-- Sent from a bare JID or the host, send_iq waits on "iq-result/<target>/<id>" events, which are
-- fired only if nobody handles the iq first; sent from a full JID it hooks "iq/full" itself at
-- priority 1, which is why iq/full is hooked below that.
local function awaited_by_another_module(host_events, stanza)
	local t = stanza.attr.type;
	if t ~= "result" and t ~= "error" then
		return false;
	end
	local to = stanza.attr.to or module.host;
	local target = (to == module.host and "host") or "bare";
	local handlers = host_events.get_handlers("iq-"..t.."/"..target.."/"..tostring(stanza.attr.id));
	return handlers ~= nil and #handlers > 0;
end

-- Hooks the kinds the client POSTs: above mod_iq's iq/host handler (default priority 0), so the
-- order is defined; iq/full below module:send_iq's own handler (priority 1), see
-- awaited_by_another_module. A profile may narrow the addresses (`callback_events`, of host,
-- bare, full) and set the priority (`callback_priority`): mod_rest on a VirtualHost takes only
-- what is addressed to the host itself and nothing else handles. Returns the set of kinds hooked.
local function hook_forwarded(client, rooms, profile)
	local host_events = prosody.hosts[module.host].events;
	local function forward(event)
		local stanza = event.stanza;
		if stanza.name == "iq" and awaited_by_another_module(host_events, stanza) then
			return; -- leave it to mod_iq
		end
		local not_posted = client:submit(stanza, rooms.core);
		if not_posted then
			rooms.perform(not_posted);
		end
		return true;
	end
	local forwarded = {};
	for _, kind in ipairs(client:kinds()) do
		forwarded[kind] = true;
		for _, target in ipairs(profile.callback_events or { "host", "bare", "full" }) do
			module:hook(kind.."/"..target, forward, profile.callback_priority
				or ((kind == "iq" and target == "full") and 0.5 or 10));
		end
	end
	rooms.forward_presence(forwarded.presence or false);
	return forwarded;
end

-- The hand-over on reload: this instance saves its client (and lets it go on unload without
-- closing it), the next one adopts it. `watch` is the descriptor watch: `watch.adopt(old)` has
-- the client take over `old`'s pool and watches the client's new descriptor.
local function hand_over(shim, rooms, client, watch)
	local handed_over = false;
	shim.registries.on_save(function (saved)
		handed_over = true;
		saved.component_http_client = client;
	end);
	shim.registries.on_restore(function (saved)
		local old = saved.component_http_client;
		if old then
			watch.adopt(old);
			module:log("debug", "Took over the previous instance's %d pending stanzas", client:pending());
		end
	end);
	shim.registries.on_unload(function ()
		-- Stop watching before the descriptor is closed, then answer whatever is still pending.
		watch.close();
		if not handed_over then
			send_outcomes(shim, rooms, client:close());
			return;
		end
		timer.add_task(adoption_grace, function ()
			if client:fd() == nil then
				return; -- adopted: its stanzas are the new instance's now
			end
			module:log("warn", "The reloaded module did not take over; answering the %d pending stanzas", client:pending());
			local ok, err = xpcall(send_outcomes, traceback, shim, rooms, client:close());
			if not ok then
				module:log("error", "Failed to answer pending stanzas: %s", err);
			end
		end);
	end);
end

-- Starts the client; returns it, and the set of kinds it POSTs (the identity answers the rest).
local function start(shim, native, profile, options, rooms)
	-- What replies are checked as sent by: the component, or what the profile says (mod_rest on a
	-- VirtualHost: the host itself, see policy.rs).
	local client, config_error = native.new(options, st.stanza_mt, profile.native, profile.callback_sender or module.host);
	if not client then
		shim.refuse(config_error);
	end

	-- Sends whatever the webhook has answered; called when the descriptor wakes us. (Also draining
	-- after every submit was measured: it made Prosody's main thread slower, 108 -> 176 µs per
	-- stanza, see BENCHMARKS.md.) The main loop calls watchfd callbacks without a pcall of its
	-- own: an error escaping here would unwind through the server loop, so catch and log it.
	local function on_wakeup()
		local ok, err = xpcall(function () send_outcomes(shim, rooms, client:drain()); end, traceback);
		if not ok then
			module:log("error", "Failed to deliver webhook answers: %s", err);
		end
	end

	local watcher = server.watchfd(client:fd(), on_wakeup);
	local watch = {
		close = function () watcher:close(); end;
		adopt = function (old)
			watcher:close();
			send_outcomes(shim, rooms, client:adopt(old));
			watcher = server.watchfd(client:fd(), on_wakeup);
		end;
	};

	local forwarded = hook_forwarded(client, rooms, profile);

	local public_url = options[profile.url_option]:gsub("//[^/@]*@", "//");
	module:log("info", "Posting %s stanzas to %s", table.concat(client:kinds(), ", "), public_url);
	module:set_status("info", "Posting to "..public_url);

	hand_over(shim, rooms, client, watch);
	return client, forwarded;
end

return {
	start = start;
};
