-- Benchmark self-test stand-in. NOT the project's module.
--
-- A minimal webhook component written for bench/ only, so the pipeline of
-- setup (3), `--other-plugin-dir DIR`, can be exercised end to end (XMPP in,
-- HTTP POST to the webhook, JSON reply out) before or without the real
-- module. It uses Prosody's own net.http client, which opens one connection
-- per request. It handles messages with a body only; errors from the webhook
-- are dropped rather than bounced.
--
--   bench/run --other-plugin-dir bench/selftest/lua_http_component

local http = require "net.http";
local json = require "util.json";
local st = require "util.stanza";

local post_url = module:get_option_string("component_post_url");
assert(post_url, "component_post_url is required");

local function forward(event)
	local origin, stanza = event.origin, event.stanza;
	if stanza.attr.type == "error" then
		return true;
	end
	local payload = json.encode({
		to = stanza.attr.to;
		from = stanza.attr.from;
		kind = stanza.name;
		body = stanza:get_child_text("body");
		stanza = tostring(stanza);
	});
	http.request(post_url, {
		method = "POST";
		body = payload;
		headers = { ["Content-Type"] = "application/json" };
	}, function(text, code, response)
		if code ~= 200 or type(response) ~= "table" then
			return;
		end
		if response.headers["content-type"] ~= "application/json" then
			return;
		end
		local data = json.decode(text);
		if type(data) ~= "table" or data.body == nil then
			return;
		end
		origin.send(st.message({
			to = stanza.attr.from;
			from = stanza.attr.to;
			type = "chat";
		}):tag("body"):text(tostring(data.body)):up());
	end);
	return true;
end

for _, jid_kind in ipairs({ "host", "bare", "full" }) do
	module:hook("message/" .. jid_kind, forward);
end
