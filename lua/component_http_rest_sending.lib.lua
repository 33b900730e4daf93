-- mod_rest sending as an account (on a VirtualHost): the session a stanza is sent from, so
-- Prosody's handlers treat it as the account's own; the pre-events Prosody fires for what a
-- client sends; and an archive query's results, collected for the HTTP answer.

local jid = require "util.jid";
local new_id = require "util.id".medium;

-- The most stanzas an archive query collects for its answer (the results before the final iq);
-- past it the rest are dropped, with a log line (README: mod_rest, "An archive query").
local max_collected = 1000;

-- While the archive query `stanza` (sent as `sender`) waits, catches its results routed back to
-- the sender (from a remote archive, a room's) into `collected`. Returns the function that stops.
local function collect_archive(stanza, sender, collected)
	local query = stanza:get_child("query", "urn:xmpp:mam:2");
	if not query then
		return function () end;
	end
	-- The results name the query they answer: give it a name when the client gave none.
	query.attr.queryid = query.attr.queryid or new_id();
	local queryid, bare = query.attr.queryid, jid.bare(stanza.attr.from or sender);
	local function catch(event)
		local result = event.stanza:get_child("result", "urn:xmpp:mam:2");
		if result and result.attr.queryid == queryid and jid.bare(event.stanza.attr.to) == bare then
			if #collected < max_collected then
				table.insert(collected, event.stanza);
			elseif not collected.dropped then
				collected.dropped = true;
				module:log("warn", "An archive query over HTTP got more than %d results: the rest are dropped; ask "
					.."for fewer (max)", max_collected);
			end
			return true;
		end
	end
	-- Above the callback's hooks: these results are the waiting request's, not the webhook's.
	for _, event in ipairs({ "message/host", "message/bare", "message/full" }) do
		module:hook(event, catch, 100);
	end
	return function ()
		for _, event in ipairs({ "message/host", "message/bare", "message/full" }) do
			module:unhook(event, catch);
		end
	end;
end

-- mod_rest on a VirtualHost sends as an account: from a session of that account, as its
-- clients do, so Prosody's handlers treat it as theirs (a stanza to the account itself is
-- handled as one to self: its roster, its archive). What Prosody answers that session (an
-- archive query's results, a bounced error) is collected for the HTTP answer, at most
-- max_collected stanzas.
local function account_session(sender)
	local username = jid.split(sender);
	local collected = {};
	return {
		type = "c2s", username = username, host = module.host, full_jid = sender, id = "rest-"..new_id(),
		collected = collected,
		log = function (level, ...) return module:log(level, ...); end,
		send = function (stanza)
			if #collected < max_collected then
				table.insert(collected, stanza);
			end
			return true;
		end,
	};
end

-- Fires the pre-events Prosody fires for what a client sends (pre-stanza, pre-<kind>/<to type>),
-- so mod_firewall and its kin see a stanza sent over HTTP too. True when a handler took it.
local function pre_events(stanza, origin)
	local node, host, resource = jid.split(stanza.attr.to);
	local to_type = node and (resource and "/full" or "/bare") or (host and "/host" or "/bare");
	local to_self = (not host) or (node ~= nil and resource == nil and node == origin.username and host == origin.host);
	local event = { origin = origin, stanza = stanza, to_self = to_self };
	if module:fire_event("pre-stanza", event) ~= nil then
		return true;
	end
	return module:fire_event("pre-"..stanza.name..to_type, event) and true or false;
end

return {
	account_session = account_session;
	collect_archive = collect_archive;
	pre_events = pre_events;
};
