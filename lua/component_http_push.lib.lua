-- The push endpoint: a bot sends stanzas of its own, over HTTP (mod_rest's POST /rest, POST
-- /component_http). An iq waits for its answer, which comes back in the HTTP response; a message
-- to a room waits for the bot to be in it. The native library parses and checks every push
-- (native.push); this file answers the HTTP request and routes what it returns.
--
-- Everything one endpoint keeps is in its own table, `endpoint`, passed to each step: the
-- native library, the profile, the validated push options, the client (nil for a mod_rest
-- that only sends), the rooms, and the responses still waiting.

local st = require "util.stanza";
local new_id = require "util.id".medium;

local answers = module:require "component_http_answers";
local plain, render = answers.plain, answers.render;
local sending = module:require "component_http_rest_sending";
local iqs = module:require "component_http_push_iq";

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
	-- A file: answered once it is uploaded and its message sent, or at once when refused.
	local uploads = endpoint.uploads;
	if uploads then
		local began, status, why = uploads.send(stanza, true, function (upload)
			if upload.ok then
				response.status_code = 202;
				local body = render(endpoint, response, upload.stanzas[1]); -- may choose how it is sent
				return response:send(body);
			end
			response:send(plain(endpoint, response, upload.status, upload.why));
		end);
		if began then
			return true;
		elseif began == nil then
			return plain(endpoint, response, status, why);
		end
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
		local body = send_from(endpoint, action.from, stanza, response, after);
		if body ~= true then -- true: a file, answered once uploaded
			response:send(body);
		end
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

-- The HTTP handler: answers the request, at once or later (returning true). mod_rest's
-- POST /rest/echo builds the stanza and returns it, sending nothing; its other paths are the
-- community module's path parameters and GET queries (read by the native side).
local function handle_push(endpoint, event, path)
	local request, response = event.request, event.response;
	if endpoint.rest then
		local format = endpoint.native.rest_answer_format(request.headers.content_type, request.headers.accept);
		endpoint.answers_json[response] = format == "json" or nil;
		endpoint.answers_form[response] = format == "form" or nil;
		endpoint.answers_cbor[response] = format == "cbor" or nil;
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
		-- An echo uploads nothing: a file shows as the message without it, its bytes let go.
		stanza = endpoint.native.echo_without_file(stanza, st.stanza_mt);
		if stanza.name == "iq" and not stanza.attr.id then
			stanza.attr.id = new_id(); -- as it would go out
		end
		response.status_code = 200;
		return render(endpoint, response, stanza);
	end
	local origin;
	if endpoint.rest then
		origin = sender:find("@", 1, true) and sending.account_session(sender) or nil;
		if sending.pre_events(stanza, origin or prosody.hosts[module.host]) then
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
		return iqs.send(endpoint, stanza, response, timeout, bound_by, origin, sender);
	elseif stanza.name == "message" and t == "groupchat" and endpoint.rooms.core then
		return push_to_room(endpoint, stanza, response, after);
	elseif stanza.name == "presence" and endpoint.rooms.core then
		stanza = endpoint.rooms.own_presence(stanza);
	end
	return send_pushed(endpoint, stanza, response, after, origin);
end

-- Unloaded or reloaded: the waits end with the module's hooks; say so rather than never answer.
local function answer_waiting(endpoint)
	iqs.answer_waiting(endpoint);
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
		uploads = shim.uploads,
		rest = rest,
		-- The responses to answer in JSON, when the endpoint answers as the request asks (mod_rest):
		-- decided once per request, as the answer may come later (an iq's, or a 503 on unload).
		answers_json = setmetatable({}, { __mode = "k" }),
		-- mod_rest's requests answered as a form (application/x-www-form-urlencoded).
		answers_form = setmetatable({}, { __mode = "k" }),
		-- mod_rest's requests answered in CBOR (application/cbor).
		answers_cbor = setmetatable({}, { __mode = "k" }),
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
