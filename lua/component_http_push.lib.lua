-- The push endpoint: a bot sends stanzas of its own, over HTTP (mod_rest's POST /rest, POST
-- /component_http). An iq waits for its answer, which comes back in the HTTP response; a message
-- to a room waits for the bot to be in it. The native library parses and checks every push
-- (native.push); this file answers the HTTP request and routes what it returns.
--
-- Everything one endpoint keeps is in its own table, `endpoint`, passed to each step: the
-- native library, the profile, the validated push options, the client (nil for a mod_rest
-- that only sends), the rooms, and the responses still waiting.

local st = require "util.stanza";
local json = require "util.json";
local jid = require "util.jid";
local new_id = require "util.id".medium;

-- The most stanzas an archive query collects for its answer (the results before the final iq);
-- past it the rest are dropped, with a log line (README: mod_rest, "An archive query").
local max_collected = 1000;

-- mod_rest's refusals as the community module writes them: the HTTP status's XMPP error.
local rest_errors = {
	[400] = { "modify", "bad-request" }, [401] = { "auth", "not-authorized" }, [403] = { "auth", "forbidden" },
	[404] = { "cancel", "item-not-found" }, [405] = { "cancel", "not-allowed" }, [411] = { "modify", "bad-request" },
	[413] = { "modify", "resource-constraint" }, [415] = { "cancel", "bad-format" },
	[500] = { "cancel", "internal-server-error" }, [503] = { "wait", "service-unavailable" },
	[504] = { "wait", "remote-server-timeout" },
};

-- A refusal or failure, saying why: as text; to a request answered in JSON, as {"error": why}
-- (component_http) or, from mod_rest, {"type": "error", "error": {type, condition, text},
-- "code": status}; to a mod_rest request whose Accept asks for application/xmpp+xml, as an
-- XMPP stream error.
local function plain(endpoint, response, status, text)
	response.status_code = status;
	local rest_error = endpoint.rest and (rest_errors[status] or { "cancel", "undefined-condition" });
	if endpoint.answers_json[response] and rest_error then
		response.headers.content_type = "application/json";
		return json.encode({ type = "error", code = status,
			error = { type = rest_error[1], condition = rest_error[2], text = text } });
	elseif endpoint.answers_json[response] then
		response.headers.content_type = "application/json";
		return json.encode({ error = text });
	elseif rest_error and endpoint.wants_xml[response] then
		response.headers.content_type = "application/xmpp+xml";
		local streams = "urn:ietf:params:xml:ns:xmpp-streams";
		return tostring(st.stanza("error", { xmlns = "http://etherx.jabber.org/streams" })
			:tag(rest_error[2], { xmlns = streams }):up()
			:text_tag("text", text, { xmlns = streams }));
	end
	response.headers.content_type = "text/plain; charset=utf-8";
	return text.."\n";
end

-- Prosody 13.0's server_epoll drops what follows the first 4 MiB of one write, and the answer
-- to a large push can be 7 times its size: above a mebibyte the answer goes out through
-- Prosody's own send_file, fed in pieces from the string, whatever path sends it.
local PIECE = 1024 * 1024;
local function send_in_pieces(response, body)
	response.headers.content_length = ("%d"):format(#body);
	local at = 1;
	return response:send_file({
		read = function (_, size)
			if at > #body then
				return nil;
			end
			local piece = body:sub(at, at + size - 1);
			at = at + size;
			return piece;
		end;
	});
end

-- `body`, to be sent as `response`'s: in pieces when it is large (see send_in_pieces).
local function sized(response, body)
	if #body > PIECE then
		response.send = send_in_pieces;
	end
	return body;
end

-- The stanza sent, or an iq's answer, in the format the request is answered in.
local function render(endpoint, response, stanza)
	local body;
	if endpoint.profile.push_answers_json or endpoint.answers_json[response] then
		response.headers.content_type = "application/json";
		body = endpoint.native.request_json(stanza, endpoint.profile.native);
	elseif endpoint.answers_form[response] then
		response.headers.content_type = "application/x-www-form-urlencoded";
		body = endpoint.native.rest_form(stanza);
	else
		response.headers.content_type = "application/xmpp+xml";
		body = tostring(stanza);
	end
	return sized(response, body);
end

-- An iq's answer with the stanzas collected before it (an archive query's results), as the
-- community module writes them: {"xmpp": [...]} in JSON (a form cannot say a list: JSON too),
-- else <xmpp>...</xmpp>.
local function render_all(endpoint, response, stanzas)
	local parts = {};
	if endpoint.answers_json[response] or endpoint.answers_form[response] then
		for i, stanza in ipairs(stanzas) do
			parts[i] = endpoint.native.request_json(stanza, endpoint.profile.native);
		end
		response.headers.content_type = "application/json";
		return sized(response, '{"xmpp":['..table.concat(parts, ",").."]}");
	end
	for i, stanza in ipairs(stanzas) do
		parts[i] = tostring(stanza);
	end
	response.headers.content_type = "application/xmpp+xml";
	return sized(response, "<xmpp>"..table.concat(parts).."</xmpp>");
end

-- The response of the pushed iq `key` if it is still waiting, no longer counted as waiting.
local function settle(endpoint, key)
	local response = endpoint.iqs[key];
	if response then
		endpoint.iqs[key], endpoint.iq_count = nil, endpoint.iq_count - 1;
	end
	return response;
end

-- Returns the answer `reply` to the pushed iq `stanza` waiting as `key` under the client's id,
-- after the stanzas `collected` for it (an archive query's results), if any.
local function answer_iq(endpoint, key, client_id, stanza, reply, collected)
	local response = settle(endpoint, key);
	if not response then
		return; -- answered already, on unload
	end
	-- Under the promise's own xpcall an error would be lost, and the client never answered.
	local ok, body = pcall(function ()
		reply = st.clone(reply);
		reply.attr.id = client_id or key;
		local results = {};
		for _, collected_stanza in ipairs(collected or {}) do
			-- The final iq reaches the origin too (module:send_iq passes it on): once is enough.
			if not (collected_stanza.name == "iq" and collected_stanza.attr.id == key) then
				table.insert(results, collected_stanza);
			end
		end
		if #results > 0 then
			table.insert(results, reply);
			return render_all(endpoint, response, results);
		end
		return render(endpoint, response, reply);
	end);
	if not ok then
		module:log("error", "Could not return the answer to a pushed iq (to=%s): %s", endpoint.quote(stanza.attr.to), body);
		body = plain(endpoint, response, 500, "The iq's answer could not be returned: "..tostring(body));
	end
	response:send(body);
end

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

-- Sends a pushed iq get or set, waiting `timeout` seconds (set by the option or header named
-- `bound_by`) for its answer: the HTTP response's. `origin`: the session it is sent from (an
-- account's, for mod_rest on a VirtualHost), whose `collected` stanzas come before the answer.
local function send_iq(endpoint, stanza, response, timeout, bound_by, origin, sender)
	local push, names = endpoint.push, endpoint.push.names;
	if endpoint.iq_count >= push.max_iqs then
		response.headers.retry_after = "1";
		return plain(endpoint, response, 503, ("%d pushed iqs are already waiting for their answers (%s): retry later")
			:format(push.max_iqs, names.max_iqs));
	end
	-- The iq goes out under an id of ours, so no client can reuse a waiting one (which Prosody's
	-- module:send_iq would refuse, and unhook the first); the answer gets the client's back.
	local client_id, key = stanza.attr.id, new_id();
	stanza.attr.id = key;
	endpoint.iqs[key], endpoint.iq_count = response, endpoint.iq_count + 1;
	local collected = origin and origin.collected or {};
	local stop = endpoint.rest and collect_archive(stanza, sender, collected) or function () end;
	local ok, promise = pcall(module.send_iq, module, stanza, origin, timeout);
	if not ok then
		stop();
		settle(endpoint, key);
		module:log("error", "Prosody failed to send a pushed iq (to=%s): %s", endpoint.quote(stanza.attr.to), tostring(promise));
		return plain(endpoint, response, 500, "Prosody could not send the iq: "..tostring(promise));
	end
	promise:next(function (result)
		stop();
		answer_iq(endpoint, key, client_id, stanza, result.stanza, collected);
	end, function (err)
		stop();
		local reply = type(err) == "table" and err.context and err.context.stanza;
		if reply then
			return answer_iq(endpoint, key, client_id, stanza, reply, collected); -- an error the other side sent
		elseif not settle(endpoint, key) then
			return;
		elseif type(err) == "table" and err.condition == "remote-server-timeout" then
			response:send(plain(endpoint, response, 504, ("No answer to the iq within %g s (%s)")
				:format(timeout, bound_by)));
		else
			module:log("error", "Prosody failed to send a pushed iq (to=%s): %s", endpoint.quote(stanza.attr.to), tostring(err));
			response:send(plain(endpoint, response, 500, "Prosody could not send the iq: "..tostring(err)));
		end
	end);
	return true; -- answered when the iq's answer comes
end

-- Sends a pushed stanza, and the messages that go right after it (a file's caption, say; the
-- native side addressed them as the stanza); the push's answer.
local function send_pushed(endpoint, stanza, response, after, origin)
	-- A streamed answer is being written to this conversation: the messages follow it.
	local client = endpoint.client;
	local held = client and client:hold(stanza);
	if held == "full" then
		response.headers.retry_after = "1";
		return plain(endpoint, response, 503, "too many messages wait for a streamed answer to this chat to end ("
			..endpoint.push.names.queue_size.."): retry");
	elseif held == "held" then
		for _, message in ipairs(after or {}) do
			client:hold(message);
		end
		response.status_code = 202;
		return render(endpoint, response, stanza);
	end
	local quote = endpoint.quote;
	local ok, err = pcall(module.send, module, stanza, origin);
	if not ok then
		module:log("error", "Prosody failed to route a pushed %s (type=%s to=%s): %s", stanza.name,
			quote(stanza.attr.type), quote(stanza.attr.to), tostring(err));
		return plain(endpoint, response, 500, "Prosody could not route the stanza: "..tostring(err));
	end
	for i, message in ipairs(after or {}) do
		ok, err = pcall(module.send, module, message, origin);
		if not ok then
			module:log("error", "Prosody failed to route message %d of a push (to=%s): %s", i + 1,
				quote(message.attr.to), tostring(err));
			return plain(endpoint, response, 500, ("Message %d of %d could not be routed: %s"):format(i + 1, #after + 1,
				tostring(err)));
		end
	end
	-- What Prosody answered the sending session at once (an error bounced by a local handler):
	-- the answer, as the community module gives it.
	local bounced = origin and origin.collected[1];
	if bounced then
		response.status_code = 200;
		return render(endpoint, response, bounced);
	end
	response.status_code = 202;
	return render(endpoint, response, stanza);
end

-- A pushed stanza and what goes after it, sent from the bot's JID in the room.
local function send_from(endpoint, from, stanza, response, after)
	stanza.attr.from = from;
	for _, message in ipairs(after or {}) do
		message.attr.from = from;
	end
	return send_pushed(endpoint, stanza, response, after);
end

-- A groupchat message to a room: said at once when the bot is in it, else once it has joined
-- (the push waits), or refused with the status the room's answer means.
local function push_to_room(endpoint, stanza, response, after)
	local rooms = endpoint.rooms;
	-- The push's from defaults to the host: then the room's own occupant JID says it.
	local given_from = stanza.attr.from ~= module.host and stanza.attr.from or nil;
	local route, detail, message = rooms.core:route_push(stanza.attr.to, given_from);
	if route == "send" then
		return send_from(endpoint, detail, stanza, response, after);
	elseif route ~= "wait" then
		return plain(endpoint, response, detail, message);
	end
	local room, waiting = stanza.attr.to, endpoint.room_pushes;
	waiting[response] = true;
	rooms.hold_push(room, function (action)
		if not waiting[response] then
			return; -- answered already, on unload
		end
		waiting[response] = nil;
		if action.kind == "failed" then
			return response:send(plain(endpoint, response, action.status, room..": "..action.message));
		end
		response:send(send_from(endpoint, action.from, stanza, response, after));
	end);
	rooms.perform(detail);
	return true; -- answered when the bot is in the room, or cannot be
end

-- The JID a push is sent as, from its credentials: component_http's one credential sends as
-- the component; mod_rest's (endpoint.rest) say which account. Or nil and the HTTP answer.
local function authenticate(endpoint, request, response)
	local rest = endpoint.rest;
	if rest then
		local sender, status, why = rest.authenticate(request);
		if not sender then
			if status == 401 then
				response.headers.www_authenticate = rest.www_authenticate;
			end
			return nil, plain(endpoint, response, status, why);
		end
		return sender;
	end
	local given = request.headers.authorization;
	-- Prosody turns a bare "Authorization:" into "": never a match (nor are empty credentials,
	-- refused at load).
	if not (given and given ~= "" and endpoint.native.same_secret(given, endpoint.push.credentials)) then
		response.headers.www_authenticate = "Bearer";
		return nil, plain(endpoint, response, 401, "Authorization must be the configured credentials ("
			..endpoint.push.names.credentials..")");
	end
	return module.host;
end

-- Checks the request (credentials, size, framing), then has the native side read the push
-- (mod_rest's in any of its forms, at `path` under /rest). Returns the stanza, the messages
-- after it and who sends them, or nil and the HTTP answer.
local function read_push(endpoint, request, response, path)
	local sender, refused = authenticate(endpoint, request, response);
	if not sender then
		return nil, refused;
	end
	-- With streaming_uploads, Prosody calls the handler at the request's head already when the body
	-- is declared larger than http_max_content_size, and closes the connection after the answer,
	-- the body unread (without it, such a request is answered with a redirect).
	if request.partial then
		return nil, plain(endpoint, response, 413, "the stanza is larger than Prosody reads (http_max_content_size)");
	end
	-- Prosody's HTTP server does not read chunked request bodies (0.12 and 13): the body would
	-- look empty, and the chunks like a next request.
	if request.headers.transfer_encoding and (request.body or "") == "" then
		return nil, plain(endpoint, response, 411, "send the stanza with a Content-Length: Prosody does not read chunked bodies");
	end
	local too_large = endpoint.rest and endpoint.rest.too_large(request);
	if too_large then
		return nil, plain(endpoint, response, 413, too_large);
	end
	local stanza, status, why, after;
	if endpoint.rest then
		stanza, status, why, after = endpoint.native.rest_push(request.method == "GET", path or "",
			request.url and request.url.query, request.headers.content_type, request.body or "", sender,
			endpoint.push.max_size, st.stanza_mt);
	else
		stanza, status, why, after = endpoint.native.push(request.body or "", request.headers.content_type, sender,
			endpoint.profile.push_accepts_json, endpoint.push.max_size, st.stanza_mt, endpoint.profile.native);
	end
	if not stanza then
		module:log("debug", "Refused a push with HTTP %d: %s", status, why);
		return nil, plain(endpoint, response, status, why);
	end
	return stanza, after, sender;
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

-- The HTTP handler: answers the request, at once or later (returning true). mod_rest's
-- POST /rest/echo builds the stanza and returns it, sending nothing; its other paths are the
-- community module's path parameters and GET queries (read by the native side).
local function handle_push(endpoint, event, path)
	local request, response = event.request, event.response;
	if endpoint.rest then
		local format = endpoint.native.rest_answer_format(request.headers.content_type, request.headers.accept);
		endpoint.answers_json[response] = format == "json" or nil;
		endpoint.answers_form[response] = format == "form" or nil;
		-- Refusals in XML only when asked for: Accept naming application/xmpp+xml.
		endpoint.wants_xml[response] = format == "xml" and (request.headers.accept or ""):lower()
			:find("application/xmpp+xml", 1, true) and true or nil;
	elseif endpoint.profile.push_negotiates
		and endpoint.native.push_answer_format(request.headers.content_type, request.headers.accept) == "json" then
		endpoint.answers_json[response] = true;
	end
	local echo = endpoint.rest and path == "echo" and request.method ~= "GET";
	local stanza, after, sender = read_push(endpoint, request, response, not echo and path or nil);
	if not stanza then
		return after;
	end
	local t = stanza.attr.type;
	if echo then
		if stanza.name == "iq" and not stanza.attr.id then
			stanza.attr.id = new_id(); -- as it would go out
		end
		response.status_code = 200;
		return render(endpoint, response, stanza);
	end
	local origin;
	if endpoint.rest then
		origin = sender:find("@", 1, true) and account_session(sender) or nil;
		if pre_events(stanza, origin or prosody.hosts[module.host]) then
			module:log("debug", "A %s sent over HTTP was taken by a pre-%s handler", stanza.name, stanza.name);
			local bounced = origin and origin.collected[1];
			response.status_code = bounced and 200 or 202;
			return render(endpoint, response, bounced or stanza);
		end
	end
	-- The native side refuses an iq of any other type, so a get or set waits for its answer and a
	-- result or error goes out as it is.
	if stanza.name == "iq" and (t == "get" or t == "set") then
		local timeout, bound_by = endpoint.push.iq_timeout, endpoint.push.names.iq_timeout;
		if endpoint.rest then
			timeout, bound_by = endpoint.rest.iq_wait(request, timeout);
			if not timeout then
				return plain(endpoint, response, 400, bound_by);
			end
		end
		return send_iq(endpoint, stanza, response, timeout, bound_by, origin, sender);
	elseif stanza.name == "message" and t == "groupchat" and endpoint.rooms.core then
		return push_to_room(endpoint, stanza, response, after);
	elseif stanza.name == "presence" and endpoint.rooms.core then
		stanza = endpoint.rooms.own_presence(stanza);
	end
	return send_pushed(endpoint, stanza, response, after, origin);
end

-- Unloaded or reloaded: the waits end with the module's hooks; say so rather than never answer.
local function answer_waiting(endpoint)
	local keys = {};
	for key in pairs(endpoint.iqs) do
		table.insert(keys, key);
	end
	if #keys > 0 then
		module:log("info", "Answering %d pushed iqs still waiting with 503: the module is unloading", #keys);
	end
	for _, key in ipairs(keys) do
		local response = settle(endpoint, key);
		response.headers.retry_after = "1";
		response:send(plain(endpoint, response, 503, "The module was unloaded or reloaded before the iq's answer came: retry"));
	end
	for response in pairs(endpoint.room_pushes) do
		endpoint.room_pushes[response] = nil;
		response.headers.retry_after = "1";
		response:send(plain(endpoint, response, 503, "The module was unloaded or reloaded before the bot was in the room: retry"));
	end
end

-- Serves the endpoint at the profile's path. `rest`: mod_rest's authentication, size limit and
-- iq wait (component_http_rest.lib.lua), nil for component_http.
local function serve(shim, native, profile, push, client, rooms, rest)
	local endpoint = {
		native = native, profile = profile, push = push, client = client, rooms = rooms, quote = shim.quote,
		rest = rest,
		-- The responses to answer in JSON, when the endpoint answers as the request asks (mod_rest):
		-- decided once per request, as the answer may come later (an iq's, or a 503 on unload).
		answers_json = setmetatable({}, { __mode = "k" }),
		-- mod_rest's requests answered as a form (application/x-www-form-urlencoded).
		answers_form = setmetatable({}, { __mode = "k" }),
		-- mod_rest's requests whose refusals are written in XML.
		wants_xml = setmetatable({}, { __mode = "k" }),
		-- Pushed iqs waiting for their answers, by the id they carry on the wire: their HTTP
		-- responses, answered when the iq's answer comes, or with 503 when the module goes away.
		iqs = {}, iq_count = 0,
		-- The responses of pushes waiting for the bot to be in a room.
		room_pushes = {},
	};
	shim.registries.on_unload(function () answer_waiting(endpoint); end);
	local function handler(event, path)
		return handle_push(endpoint, event, path);
	end
	module:depends("http");
	module:provides("http", {
		default_path = profile.push_path;
		streaming_uploads = true; -- see request.partial in read_push: refuse a body too large at its head
		-- mod_rest's GET queries (GET /rest/ping/<to>, ...); component_http has none.
		route = { ["POST"] = handler; ["POST /*"] = handler; ["GET /*"] = rest and handler or nil };
	});
end

return {
	serve = serve;
};
