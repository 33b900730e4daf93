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
local new_id = require "util.id".medium;

-- A refusal or failure, saying why: as text, or as {"error": why} to a request answered in JSON.
local function plain(endpoint, response, status, text)
	response.status_code = status;
	if endpoint.answers_json[response] then
		response.headers.content_type = "application/json";
		return json.encode({ error = text });
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

-- The stanza sent, or an iq's answer, in the format the request is answered in.
local function render(endpoint, response, stanza)
	local body;
	if endpoint.profile.push_answers_json or endpoint.answers_json[response] then
		response.headers.content_type = "application/json";
		body = endpoint.native.request_json(stanza, endpoint.profile.native);
	else
		response.headers.content_type = "application/xmpp+xml";
		body = tostring(stanza);
	end
	if #body > PIECE then
		response.send = send_in_pieces;
	end
	return body;
end

-- The response of the pushed iq `key` if it is still waiting, no longer counted as waiting.
local function settle(endpoint, key)
	local response = endpoint.iqs[key];
	if response then
		endpoint.iqs[key], endpoint.iq_count = nil, endpoint.iq_count - 1;
	end
	return response;
end

-- Returns the answer `reply` to the pushed iq `stanza` waiting as `key` under the client's id.
local function answer_iq(endpoint, key, client_id, stanza, reply)
	local response = settle(endpoint, key);
	if not response then
		return; -- answered already, on unload
	end
	-- Under the promise's own xpcall an error would be lost, and the client never answered.
	local ok, body = pcall(function ()
		reply = st.clone(reply);
		reply.attr.id = client_id or key;
		return render(endpoint, response, reply);
	end);
	if not ok then
		module:log("error", "Could not return the answer to a pushed iq (to=%s): %s", endpoint.quote(stanza.attr.to), body);
		body = plain(endpoint, response, 500, "The iq's answer could not be returned: "..tostring(body));
	end
	response:send(body);
end

-- Sends a pushed iq get or set, waiting `timeout` seconds (set by the option or header named
-- `bound_by`) for its answer: the HTTP response's.
local function send_iq(endpoint, stanza, response, timeout, bound_by)
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
	module:send_iq(stanza, nil, timeout):next(function (result)
		answer_iq(endpoint, key, client_id, stanza, result.stanza);
	end, function (err)
		local reply = type(err) == "table" and err.context and err.context.stanza;
		if reply then
			return answer_iq(endpoint, key, client_id, stanza, reply); -- an error the other side sent
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
local function send_pushed(endpoint, stanza, response, after)
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
	local ok, err = pcall(module.send, module, stanza);
	if not ok then
		module:log("error", "Prosody failed to route a pushed %s (type=%s to=%s): %s", stanza.name,
			quote(stanza.attr.type), quote(stanza.attr.to), tostring(err));
		return plain(endpoint, response, 500, "Prosody could not route the stanza: "..tostring(err));
	end
	for i, message in ipairs(after or {}) do
		ok, err = pcall(module.send, module, message);
		if not ok then
			module:log("error", "Prosody failed to route message %d of a push (to=%s): %s", i + 1,
				quote(message.attr.to), tostring(err));
			return plain(endpoint, response, 500, ("Message %d of %d could not be routed: %s"):format(i + 1, #after + 1,
				tostring(err)));
		end
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

-- Checks the request (credentials, size, framing), then has the native side read the push.
-- Returns the stanza and the messages after it, or nil and the HTTP answer.
local function read_push(endpoint, request, response)
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
	local stanza, status, why, after = endpoint.native.push(request.body or "", request.headers.content_type, sender,
		endpoint.profile.push_accepts_json, endpoint.push.max_size, st.stanza_mt, endpoint.profile.native);
	if not stanza then
		module:log("debug", "Refused a push with HTTP %d: %s", status, why);
		return nil, plain(endpoint, response, status, why);
	end
	return stanza, after;
end

-- The HTTP handler: answers the request, at once or later (returning true). mod_rest's
-- POST /rest/echo builds the stanza and returns it, sending nothing.
local function handle_push(endpoint, event, path)
	local request, response = event.request, event.response;
	if endpoint.profile.push_negotiates
		and endpoint.native.push_answer_format(request.headers.content_type, request.headers.accept) == "json" then
		endpoint.answers_json[response] = true;
	end
	-- mod_rest knows /rest and /rest/echo; a path that means more in the community module (kind,
	-- type and to as path parameters) is refused rather than read as a plain POST /rest.
	if endpoint.rest and path and path ~= "" and path ~= "echo" then
		return plain(endpoint, response, 404, "Only POST /rest and POST /rest/echo are served: path parameters "
			.."are not supported; put kind, type and to in the body");
	end
	local stanza, after = read_push(endpoint, request, response);
	if not stanza then
		return after;
	end
	local t = stanza.attr.type;
	if endpoint.rest and path == "echo" then
		if stanza.name == "iq" and not stanza.attr.id then
			stanza.attr.id = new_id(); -- as it would go out
		end
		response.status_code = 200;
		return render(endpoint, response, stanza);
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
		return send_iq(endpoint, stanza, response, timeout, bound_by);
	elseif stanza.name == "message" and t == "groupchat" and endpoint.rooms.core then
		return push_to_room(endpoint, stanza, response, after);
	elseif stanza.name == "presence" and endpoint.rooms.core then
		stanza = endpoint.rooms.own_presence(stanza);
	end
	return send_pushed(endpoint, stanza, response, after);
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
		route = { ["POST"] = handler; ["POST /*"] = handler };
	});
end

return {
	serve = serve;
};
