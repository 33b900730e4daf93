-- mod_rest.lua in a fake Prosody module environment, with the real native library: the same
-- shared steps as mod_component_http, in mod_rest's shape (the callback optional, rest_ options,
-- the XML contract, presence left to the webhook).
local helpers = require "spec.helpers";
local st = require "util.stanza";
local json = require "util.json";

-- The kind of host the next fake module is loaded on: a Component unless a spec says "local"
-- (a VirtualHost).
local host_type;
local fake_module = helpers.fake_module;
function helpers.fake_module(...)
	local fake = fake_module(...);
	fake.host_type = host_type;
	-- Events fired (pre-stanza, pre-<kind>/...), answered by `fake.fired_answer` when set.
	fake.fired, fake.unhooked = {}, {};
	function fake:fire_event(name, event)
		table.insert(self.fired, { name = name, event = event });
		return self.fired_answer and self.fired_answer(name, event);
	end
	function fake:unhook(name) table.insert(self.unhooked, name); end
	-- net.http: the OPTIONS probe's request, recorded (`fake.probes`), answered by the spec.
	fake.probes = {};
	package.loaded["net.http"] = {
		request = function (url, request, callback)
			table.insert(fake.probes, { url = url, method = request.method, callback = callback });
		end,
	};
	return fake;
end
after_each(function () host_type = nil; end);

local load = helpers.loader(after_each, "rest");

local function logged(fake, level, text)
	for _, log in ipairs(fake.logs) do
		if log.level == level and log.message:find(text, 1, true) then return true; end
	end
	return false;
end

describe("mod_rest", function ()
	it("without a callback URL only sends: no hooks, no descriptor, the endpoint at /rest", function ()
		local fake, watch, ok = load({ rest_credentials = "Bearer t0k3n" });
		assert.is_true(ok);
		assert.are.same({}, fake.hooks);
		assert.is_nil(watch.fd);
		assert.is_nil(fake.global_hooks["stats-update"]);
		assert.are.equal("rest", fake.provided.http.default_path);
	end);

	it("with neither a callback URL nor credentials serves /rest, for Basic and Bearer clients", function ()
		local fake, _, ok = load({});
		assert.is_true(ok);
		assert.are.same({}, fake.hooks);
		assert.are.equal("rest", fake.provided.http.default_path);
		assert.truthy(fake.dependencies:find("tokenauth", 1, true));
	end);

	it("with a callback URL posts every kind and leaves presence to the webhook", function ()
		local url = "http://127.0.0.1:"..helpers.closed_port().."/stanzas";
		local fake, watch, ok = load({ rest_callback_url = url, rest_retry_window = 0 });
		assert.is_true(ok);
		assert.is_number(watch.fd);
		local forward = fake.hooks["message/bare"].handler;
		for _, kind in ipairs({ "message", "presence", "iq" }) do
			for _, target in ipairs({ "host", "bare", "full" }) do
				assert.are.equal(forward, fake.hooks[kind.."/"..target].handler, kind.."/"..target);
			end
		end
		assert.are.equal("rest", fake.provided.http.default_path, "Basic and Bearer clients may send");
		assert.is_function(fake.global_hooks["stats-update"]);
		-- A dead callback: the sender gets an error, from the descriptor callback.
		forward({ stanza = st.message({ to = "bot@rest.localhost", from = "u@localhost/r", id = "r1" }), origin = {} });
		local sent = helpers.wait_sent(fake, watch, 1);
		assert.are.equal("r1", sent[1].attr.id);
		assert.are.equal("error", sent[1].attr.type);
	end);

	it("probes the callback with OPTIONS at start and posts in the format its Accept asks", function ()
		local url = "http://127.0.0.1:"..helpers.closed_port().."/stanzas";
		local fake, _, ok = load({ rest_callback_url = url, rest_retry_window = 0 });
		assert.is_true(ok);
		assert.are.same({ url, "OPTIONS" }, { fake.probes[1].url, fake.probes[1].method });
		fake.probes[1].callback("", 200, { headers = { accept = "application/json" } });
		assert.is_true(logged(fake, "info", "stanzas are POSTed as such"));
		assert.are.equal("Connected", fake.status_message);
		-- An Accept naming neither format, or a failed probe, keeps the configured one.
		fake.probes[1].callback("", 200, { headers = { accept = "text/html" } });
		assert.is_true(logged(fake, "warn", "keeping rest_callback_content_type"));
		fake.probes[1].callback("", 404, {});
		assert.is_true(logged(fake, "warn", "HTTP 404"));
	end);

	it("names its own options when one is invalid", function ()
		for _, case in ipairs({
			{ { rest_callback_url = "ftp://x/" }, "rest_callback_url" },
			{ { rest_callback_url = "http://127.0.0.1/", rest_timeout = 0 }, "rest_timeout" },
			{ { rest_credentials = "Bearer t", rest_max_push_iqs = -1 }, "rest_max_push_iqs" },
			{ { rest_callback_url = "http://127.0.0.1/", rest_callback_content_type = "text/xml" },
				"rest_callback_content_type" },
		}) do
			local fake, _, ok, err = load(case[1]);
			assert.is_false(ok);
			assert.truthy(err:find(case[2], 1, true), err);
			assert.is_nil(err:find("component_post_", 1, true), err);
			assert.is_true(logged(fake, "error", case[2]));
			assert.is_nil(fake.provided);
		end
	end);

	-- POSTs `body` to the fake's endpoint: the response, and what the handler returned.
	local function poster(fake)
		return function (body, content_type, accept)
			local response = { headers = {}, sent = {} };
			function response:send(text) table.insert(self.sent, text); end
			local headers = { authorization = "Bearer t0k3n", content_type = content_type or "application/xmpp+xml",
				accept = accept };
			local returned = fake.provided.http.route.POST({ response = response,
				request = { headers = headers, body = body } });
			return response, returned;
		end
	end

	it("answers a pushed message with the stanza as XML, and an iq's answer as XML", function ()
		local fake = load({ rest_credentials = "Bearer t0k3n" });
		local post = poster(fake);
		local response, returned = post("<message to='alice@localhost'><body>hi</body></message>");
		assert.are.equal(202, response.status_code);
		assert.are.equal("application/xmpp+xml", response.headers.content_type);
		assert.truthy(returned:find("from='rest.localhost'", 1, true), returned);
		assert.are.equal("hi", fake.sent[1]:get_child_text("body"));
		response = post("<iq type='get' to='localhost' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>");
		fake.iqs[1].resolve({ stanza = st.reply(fake.iqs[1].stanza) });
		assert.are.equal("application/xmpp+xml", response.headers.content_type);
		local answer = require "util.xml".parse(response.sent[1]);
		assert.are.same({ "result", "p1" }, { answer.attr.type, answer.attr.id });
	end);

	it("takes a JSON push and answers it in JSON: the stanza sent, an iq's answer, a refusal", function ()
		local fake = load({ rest_credentials = "Bearer t0k3n" });
		local post = poster(fake);
		local response, returned = post('{"to":"alice@localhost","body":"hi"}', "application/json");
		assert.are.equal(202, response.status_code);
		assert.are.equal("application/json", response.headers.content_type);
		local sent = json.decode(returned);
		assert.are.same({ "message", "chat", "rest.localhost", "alice@localhost", "hi" },
			{ sent.kind, sent.type, sent.from, sent.to, sent.body });
		assert.are.equal("hi", fake.sent[1]:get_child_text("body"));

		-- An iq's payload comes in `stanza`; `to` fills in what it lacks.
		response = post([[{"to":"localhost","stanza":"<iq type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>"}]],
			"application/json");
		fake.iqs[1].resolve({ stanza = st.reply(fake.iqs[1].stanza) });
		assert.are.equal("application/json", response.headers.content_type);
		local answer = json.decode(response.sent[1]);
		assert.are.same({ "iq", "result", "p1", "rest.localhost" }, { answer.kind, answer.type, answer.id, answer.to });

		response, returned = post('{"to":"alice@localhost","from":"admin@localhost"}', "application/json");
		assert.are.equal(403, response.status_code);
		assert.are.equal("application/json", response.headers.content_type);
		local refusal = json.decode(returned);
		assert.are.same({ "error", 403, "auth", "forbidden" },
			{ refusal.type, refusal.code, refusal.error.type, refusal.error.condition });
		assert.truthy(refusal.error.text:find("not on this component", 1, true), returned);
		assert.are.equal(2, #fake.sent, "nothing more routed (the message and the iq only)");
	end);

	it("answers as Accept prefers, whatever the push was written in", function ()
		local fake = load({ rest_credentials = "Bearer t0k3n" });
		local post = poster(fake);
		local response, returned = post("<message to='alice@localhost'><body>hi</body></message>", nil,
			"application/json");
		assert.are.equal("application/json", response.headers.content_type);
		assert.are.equal("hi", json.decode(returned).body);
		response, returned = post('{"to":"alice@localhost","body":"hi"}', "application/json", "application/xmpp+xml");
		assert.are.equal("application/xmpp+xml", response.headers.content_type);
		assert.truthy(returned:find("<body>hi</body>", 1, true), returned);
		-- A refusal before the body is read (a wrong token) already speaks the format asked for.
		response = { headers = {}, sent = {} };
		returned = fake.provided.http.route.POST({ response = response, request = {
			headers = { authorization = "Bearer wrong", content_type = "application/json" }, body = "{}" } });
		assert.are.equal(403, response.status_code);
		assert.truthy(json.decode(returned).error.text:find("rest_credentials", 1, true), returned);
		-- Asked for XML: an XMPP stream error.
		response = { headers = {}, sent = {} };
		returned = fake.provided.http.route.POST({ response = response, request = {
			headers = { authorization = "Bearer wrong", accept = "application/xmpp+xml" }, body = "{}" } });
		assert.are.equal("application/xmpp+xml", response.headers.content_type);
		local err = require "util.xml".parse(returned);
		assert.are.equal("http://etherx.jabber.org/streams", err.attr.xmlns);
		assert.truthy(err:get_child("forbidden", "urn:ietf:params:xml:ns:xmpp-streams"), returned);
		assert.truthy(err:get_child_text("text", "urn:ietf:params:xml:ns:xmpp-streams"):find("rest_credentials", 1, true));
	end);
end);

describe("mod_rest on a VirtualHost", function ()
	it("hooks only stanzas to the host itself, below Prosody's own handlers, and nothing of the bot's", function ()
		host_type = "local";
		local url = "http://127.0.0.1:"..helpers.closed_port().."/stanzas";
		local fake, _, ok, err = load({ rest_callback_url = url });
		assert.is_true(ok, err);
		for event, hook in pairs(fake.hooks) do
			assert.truthy(event:match("^%a+/host$"), event);
			assert.are.equal(-1, hook.priority, event);
		end
		for _, kind in ipairs({ "message", "presence", "iq" }) do
			assert.is_table(fake.hooks[kind.."/host"], kind);
		end
		assert.is_nil(fake.hooks["iq-get/host/http://jabber.org/protocol/disco#info:query"], "the server's own disco");
		assert.is_nil(fake.hooks["iq-get/bare/vcard-temp:vCard"], "the users' vCards");
	end);

	it("refuses what would take the users' traffic or let one credential speak for them", function ()
		for _, case in ipairs({
			{ { rest_callback_url = "http://127.0.0.1/", rest_callback_events = { "host", "bare" } }, "rest_callback_events" },
			{ { rest_credentials = "Bearer t0k3n" }, "rest_credentials is for mod_rest as a Component" },
			{ { rest_rooms = { "room@conference.localhost" } }, "rest_rooms is for mod_rest as a Component" },
		}) do
			host_type = "local";
			local fake, _, ok, err = load(case[1]);
			assert.is_false(ok);
			assert.truthy(err:find(case[2], 1, true), err);
			assert.is_nil(fake.provided);
			assert.are.same({}, fake.hooks);
		end
	end);
end);

describe("mod_rest's endpoint", function ()
	local function post(fake, body, headers, path)
		local response = { headers = {}, sent = {} };
		function response:send(text) table.insert(self.sent, text); end
		headers.content_type = headers.content_type or "application/xmpp+xml";
		local event = { response = response, request = { headers = headers, body = body } };
		local returned = path and fake.provided.http.route["POST /*"](event, path) or fake.provided.http.route.POST(event);
		return response, returned;
	end

	it("echoes the stanza it builds and sends nothing, an iq included", function ()
		local fake = load({ rest_credentials = "Bearer t0k3n" });
		local auth = { authorization = "Bearer t0k3n" };
		local response, returned = post(fake, "<message to='alice@localhost'><body>hi</body></message>", auth, "echo");
		assert.are.equal(200, response.status_code);
		assert.truthy(returned:find("<body>hi</body>", 1, true), returned);
		response, returned = post(fake, "<iq type='get' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>", auth, "echo");
		assert.are.equal(200, response.status_code);
		assert.truthy(returned:find(" id=", 1, true), returned);
		assert.are.same({}, fake.sent);
		assert.are.same({}, fake.iqs);
	end);

	it("takes Basic with the component's JID and secret, and names what it accepts when refusing", function ()
		local fake = load({ component_secret = "s3cret" });
		local function basic(creds) return { authorization = "Basic "..require "util.encodings".base64.encode(creds) }; end
		local chat = "<message to='alice@localhost'><body>hi</body></message>";
		local response = post(fake, chat, basic("rest.localhost:s3cret"));
		assert.are.equal(202, response.status_code);
		for _, creds in ipairs({ "rest.localhost:wrong", "alice:s3cret", "rest.localhost" }) do
			local refused, returned = post(fake, chat, basic(creds));
			assert.are.equal(403, refused.status_code, creds);
			assert.truthy(returned:find("rest_auth_mechanisms", 1, true), returned);
		end
		local missing = post(fake, chat, {});
		assert.are.equal(401, missing.status_code);
		assert.are.equal('Basic realm="rest.localhost/rest", Bearer realm="rest.localhost/rest"',
			missing.headers.www_authenticate);
		assert.are.equal(1, #fake.sent);
	end);

	it("waits for an iq as the header or rest_iq_timeout says, at most rest_iq_max_timeout", function ()
		local fake = load({ rest_credentials = "Bearer t0k3n", rest_iq_max_timeout = 200 });
		local iq = "<iq type='get' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>";
		post(fake, iq, { authorization = "Bearer t0k3n" });
		post(fake, iq, { authorization = "Bearer t0k3n", prosody_rest_timeout = "5" });
		post(fake, iq, { authorization = "Bearer t0k3n", prosody_rest_timeout = "1000" });
		assert.are.same({ 120, 5, 200 }, { fake.iqs[1].timeout, fake.iqs[2].timeout, fake.iqs[3].timeout });
		local response, returned = post(fake, iq, { authorization = "Bearer t0k3n", prosody_rest_timeout = "soon" });
		assert.are.equal(400, response.status_code);
		assert.truthy(returned:find("Prosody-Rest-Timeout", 1, true), returned);
		response, returned = post(fake, "<message to='a@localhost'><body>"..("x"):rep(200 * 1024).."</body></message>",
			{ authorization = "Bearer t0k3n" });
		assert.are.equal(413, response.status_code);
		assert.truthy(returned:find("rest_stanza_size_limit", 1, true), returned);
		assert.are.equal(3, #fake.sent);
	end);
end);

describe("mod_rest's paths", function ()
	local function request(fake, method, path, body, content_type, query, accept)
		local response = { headers = {}, sent = {} };
		function response:send(text) table.insert(self.sent, text); end
		local returned = fake.provided.http.route[method.." /*"]({ response = response, request = {
			method = method, url = { query = query },
			headers = { authorization = "Bearer t0k3n", content_type = content_type, accept = accept },
			body = body } }, path);
		return response, returned;
	end

	it("reads path parameters with a text, form or JSON body, and refuses an XML one rather than misread it", function ()
		local fake = load({ rest_credentials = "Bearer t0k3n" });
		local response, returned = request(fake, "POST", "message/chat/bob@localhost", "Hi Bob", "text/plain");
		assert.are.equal(202, response.status_code, returned);
		assert.are.same({ "chat", "bob@localhost", "Hi Bob" },
			{ fake.sent[1].attr.type, fake.sent[1].attr.to, fake.sent[1]:get_child_text("body") });
		response = request(fake, "POST", "message/headline/bob@localhost", "body=Hello+Bob",
			"application/x-www-form-urlencoded");
		assert.are.equal(202, response.status_code);
		assert.are.equal("application/x-www-form-urlencoded", response.headers.content_type, "answered as written");
		assert.are.same({ "headline", "Hello Bob" }, { fake.sent[2].attr.type, fake.sent[2]:get_child_text("body") });
		response, returned = request(fake, "POST", "message/chat/bob@localhost",
			"<message to='alice@localhost'><body>hi</body></message>", "application/xmpp+xml");
		assert.are.equal(400, response.status_code);
		assert.truthy(returned:find("path parameters", 1, true), returned);
		assert.are.equal(2, #fake.sent);
	end);

	it("answers GET queries with the iq's answer, in the format Accept asks", function ()
		local fake = load({ rest_credentials = "Bearer t0k3n" });
		local response = request(fake, "GET", "version/localhost", nil, nil, nil, "application/json");
		local iq = fake.iqs[1].stanza;
		assert.are.same({ "get", "localhost" }, { iq.attr.type, iq.attr.to });
		assert.truthy(iq:get_child("query", "jabber:iq:version"));
		fake.iqs[1].resolve({ stanza = st.reply(iq):query("jabber:iq:version"):text_tag("name", "Prosody"):up() });
		assert.are.equal("application/json", response.headers.content_type);
		assert.are.equal("Prosody", json.decode(response.sent[1]).version.name);
		local refused, returned = request(fake, "GET", "nosuch/localhost");
		assert.are.equal(400, refused.status_code);
		assert.truthy(returned:find("nosuch", 1, true), returned);
	end);

	it("fires pre-stanza and pre-<kind>/<type> for what it sends, and a handler that takes it stops it", function ()
		local fake = load({ rest_credentials = "Bearer t0k3n" });
		request(fake, "POST", "message/chat/bob@localhost", "Hi", "text/plain");
		assert.are.same({ "pre-stanza", "pre-message/bare" }, { fake.fired[1].name, fake.fired[2].name });
		assert.are.equal(fake.sent[1], fake.fired[1].event.stanza);
		fake.fired_answer = function (name) return name == "pre-stanza" and true or nil; end;
		local response = request(fake, "POST", "message/chat/bob@localhost", "Blocked", "text/plain");
		assert.are.equal(202, response.status_code);
		assert.are.equal(1, #fake.sent, "taken by the pre-stanza handler: not sent");
	end);
end);
