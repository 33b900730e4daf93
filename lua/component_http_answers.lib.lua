-- The push endpoint's HTTP answers, in the format the request is answered in: a stanza sent or
-- an iq's answer (XML, JSON in the module's field names, or mod_rest's form or CBOR: the JSON's
-- value in CBOR), the results of an archive query with it, and refusals saying why. The endpoint
-- (component_http_push.lib.lua) decides once per request which format that is, in
-- `endpoint.answers_json`, `answers_form`, `answers_cbor` and `wants_xml`.

local st = require "util.stanza";
local json = require "util.json";

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
-- "code": status}, in CBOR too when the request is answered so; to a mod_rest request whose
-- Accept asks for application/xmpp+xml, as an XMPP stream error.
local function plain(endpoint, response, status, text)
	response.status_code = status;
	local rest_error = endpoint.rest and (rest_errors[status] or { "cancel", "undefined-condition" });
	if (endpoint.answers_json[response] or endpoint.answers_cbor[response]) and rest_error then
		local body = json.encode({ type = "error", code = status,
			error = { type = rest_error[1], condition = rest_error[2], text = text } });
		if endpoint.answers_cbor[response] then
			response.headers.content_type = "application/cbor";
			return endpoint.native.rest_cbor(body);
		end
		response.headers.content_type = "application/json";
		return body;
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
	elseif endpoint.answers_cbor[response] then
		response.headers.content_type = "application/cbor";
		body = endpoint.native.rest_cbor(endpoint.native.request_json(stanza, endpoint.profile.native));
	else
		response.headers.content_type = "application/xmpp+xml";
		body = tostring(stanza);
	end
	return sized(response, body);
end

-- An iq's answer with the stanzas collected before it (an archive query's results), as the
-- community module writes them: {"xmpp": [...]} in JSON (a form cannot say a list: JSON too) or
-- CBOR, else <xmpp>...</xmpp>.
local function render_all(endpoint, response, stanzas)
	local parts = {};
	if endpoint.answers_json[response] or endpoint.answers_form[response] or endpoint.answers_cbor[response] then
		for i, stanza in ipairs(stanzas) do
			parts[i] = endpoint.native.request_json(stanza, endpoint.profile.native);
		end
		local body = '{"xmpp":['..table.concat(parts, ",").."]}";
		if endpoint.answers_cbor[response] then
			response.headers.content_type = "application/cbor";
			return sized(response, endpoint.native.rest_cbor(body));
		end
		response.headers.content_type = "application/json";
		return sized(response, body);
	end
	for i, stanza in ipairs(stanzas) do
		parts[i] = tostring(stanza);
	end
	response.headers.content_type = "application/xmpp+xml";
	return sized(response, "<xmpp>"..table.concat(parts).."</xmpp>");
end

return {
	plain = plain;
	render = render;
	render_all = render_all;
};
