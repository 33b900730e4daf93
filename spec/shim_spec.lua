-- The Lua shim in a fake Prosody module environment, with the real native library.
local helpers = require "spec.helpers";
local st = require "util.stanza";

local function event(stanza) return { stanza = stanza, origin = {} }; end

local load = helpers.loader(after_each);

describe("mod_component_http shim", function ()
	local dead_url;
	before_each(function ()
		dead_url = "http://127.0.0.1:"..helpers.closed_port().."/hook";
	end);

	it("refuses to load without component_post_url, naming the option", function ()
		local fake, _, ok, err = load({});
		assert.is_false(ok);
		assert.matches("component_post_url", err, 1, true);
		assert.are.equal("error", fake.logs[1].level);
		assert.matches("component_post_url", fake.logs[1].message, 1, true);
	end);

	it("hooks messages and answers presence itself by default", function ()
		local fake, watch, ok = load({ component_post_url = dead_url, component_post_retry_window = 0 });
		assert.is_true(ok);
		assert.is_number(watch.fd);
		for _, target in ipairs({ "host", "bare", "full" }) do
			assert.is_function(fake.hooks["message/"..target].handler);
			assert.is_function(fake.hooks["presence/"..target].handler);
			assert.is_nil(fake.hooks["iq/"..target]);
		end
		assert.are_not.equal(fake.hooks["message/bare"].handler, fake.hooks["presence/bare"].handler);
	end);

	it("forwards the kinds of either option name, iq above mod_iq", function ()
		for _, name in ipairs({ "component_post_stanzas", "post_stanza_types" }) do
			local fake = load({ component_post_url = dead_url, [name] = { "iq", "presence" } });
			assert.is_nil(fake.hooks["message/bare"]);
			assert.are.equal(fake.hooks["iq/host"].handler, fake.hooks["presence/full"].handler);
			assert.is_true(fake.hooks["iq/host"].priority > 0);
		end
	end);

	it("answers presence as an always-online contact that accepts subscriptions", function ()
		local fake = load({ component_post_url = dead_url, component_post_retry_window = 0 });
		local handle = fake.hooks["presence/bare"].handler;
		local function presence(type)
			fake.sent = {};
			assert.is_true(handle(event(st.presence({ to = "echo@bot.localhost", from = "u@localhost/r", type = type }))));
			return fake.sent;
		end
		local sent = presence("subscribe");
		assert.are.equal(2, #sent);
		assert.are.same({ from = "echo@bot.localhost", to = "u@localhost/r", type = "subscribed" }, sent[1].attr);
		assert.are.same({ from = "echo@bot.localhost/default", to = "u@localhost/r" }, sent[2].attr);
		sent = presence("probe");
		assert.are.same({ from = "echo@bot.localhost/default", to = "u@localhost/r" }, sent[1].attr);
		sent = presence("unsubscribe");
		assert.are.same({ from = "echo@bot.localhost/default", to = "u@localhost/r", type = "unavailable" }, sent[1].attr);
		assert.are.same({}, presence(nil));
		assert.are.same({}, presence("unavailable"));
	end);

	it("turns a dead webhook into an error reply, delivered from the fd callback", function ()
		local fake, watch = load({ component_post_url = dead_url, component_post_retry_window = 0 });
		local msg = st.message({ to = "echo@bot.localhost", from = "u@localhost/r", type = "chat", id = "m1" }):text_tag("body", "hi");
		assert.is_true(fake.hooks["message/bare"].handler(event(msg)));
		local sent = helpers.wait_sent(fake, watch, 1);
		assert.are.equal(1, #sent);
		assert.is_true(st.is_stanza(sent[1]));
		assert.are.same({ to = "u@localhost/r", from = "echo@bot.localhost", id = "m1", type = "error" }, sent[1].attr);
		local error_type, condition, text = sent[1]:get_error();
		assert.are.same({ "cancel", "remote-server-timeout", "Connection failure" }, { error_type, condition, text });
		local warned = false;
		for _, log in ipairs(fake.logs) do
			if log.level == "warn" and log.message:find("could not reach the webhook", 1, true) then warned = true; end
		end
		assert.is_true(warned);
	end);

	it("says in its status that the webhook is unreachable, and counts for Prosody's statistics", function ()
		-- No retries rather than no retry window: without a window nothing is held and no outage
		-- is declared.
		local fake, watch = load({ component_post_url = dead_url, component_post_retries = 0 });
		assert.are.equal("info", fake.status_type);
		local msg = st.message({ to = "echo@bot.localhost", from = "u@localhost/r", type = "chat", id = "m1" }):text_tag("body", "hi");
		fake.hooks["message/bare"].handler(event(msg));
		helpers.wait_sent(fake, watch, 1);
		assert.are.equal("warn", fake.status_type);
		assert.truthy(fake.status_message:find("The webhook is unreachable since", 1, true));
		-- Collected twice: totals are added once.
		fake.global_hooks["stats-update"]();
		fake.global_hooks["stats-update"]();
		local text = fake.statistics.metric_registry:render();
		local function sample(pattern)
			return tonumber(text:match(pattern:gsub("[%-%%]", "%%%0")..' ([%d.e+-]+)'));
		end
		assert.are.equal(1, sample('component_http__posted_total{host="bot.localhost",kind="message"}'));
		assert.are.equal(1, sample('component_http__outcomes_total{host="bot.localhost",outcome="remote-server-timeout"}'));
		assert.are.equal(1, sample('component_http__responses_total{host="bot.localhost",class="none"}'));
		assert.are.equal(0, sample('component_http__endpoint_up{host="bot.localhost"}'));
	end);

	it("offers a push endpoint only with credentials, and refuses a wrong token before anything else", function ()
		local without = load({ component_post_url = dead_url });
		assert.is_nil(without.provided);
		local fake = load({ component_post_url = dead_url, component_post_push_credentials = "Bearer t0k3n" });
		local route = fake.provided.http;
		assert.are.equal("component_http", route.default_path);
		local response = { headers = {} };
		local body = route.route.POST({ request = { headers = { authorization = "Bearer t0k3" }, body = "{}" },
			response = response });
		assert.are.equal(401, response.status_code);
		assert.are.equal("Bearer", response.headers.www_authenticate);
		assert.truthy(body:find("component_post_push_credentials", 1, true));
		response = { headers = {} };
		body = route.route.POST({ request = { headers = { authorization = "Bearer t0k3n",
			content_type = "application/json" }, body = '{"to":"a@b","from":"x@elsewhere"}' }, response = response });
		assert.are.equal(403, response.status_code);
		assert.truthy(body:find("%S"), "the body says why");
		assert.are.same({}, fake.sent);
	end);

	it("sends every other answer of a batch when Prosody raises on one, and logs that one", function ()
		-- Unload answers everything pending in one batch: three stanzas, the middle one raises.
		local server, url = helpers.silent_webhook();
		local fake = load({ component_post_url = url });
		for _, id in ipairs({ "b1", "b2", "b3" }) do
			fake.hooks["message/bare"].handler(event(st.message({ to = "e@bot.localhost", from = id.."@localhost/r", id = id })));
		end
		fake.send_error, fake.send_error_id = "mod_iq: attempt to index a nil value", "b2";
		assert.has_no.errors(function () fake.unload(); end);
		local ids = {};
		for _, stanza in ipairs(fake.sent) do table.insert(ids, stanza.attr.id); end
		table.sort(ids);
		assert.are.same({ "b1", "b3" }, ids);
		local logged = {};
		for _, log in ipairs(fake.logs) do
			if log.level == "error" then table.insert(logged, log.message); end
		end
		assert.are.equal(1, #logged);
		assert.truthy(logged[1]:find('id="b2"', 1, true), logged[1]);
		assert.truthy(logged[1]:find("attempt to index a nil value", 1, true), logged[1]);
		server:close();
	end);

	it("keeps an error in delivery from escaping the fd callback", function ()
		local fake, watch = load({ component_post_url = dead_url, component_post_retry_window = 0 });
		fake.send_error = "boom";
		fake.hooks["message/bare"].handler(event(st.message({ to = "e@bot.localhost", from = "u@localhost/r" })));
		local logged;
		for _ = 1, 300 do
			assert.has_no.errors(function () watch.onreadable(); end);
			for _, log in ipairs(fake.logs) do
				if log.level == "error" and log.message:find("boom", 1, true) then logged = true; end
			end
			if logged then break; end
			require "socket".sleep(0.01);
		end
		assert.is_true(logged);
	end);

	it("leaves iq results that another module awaits to mod_iq", function ()
		local fake = load({ component_post_url = dead_url, component_post_stanzas = { "iq" } },
			{ ["iq-result/host/q1"] = true });
		local handler = fake.hooks["iq/host"].handler;
		local awaited = st.iq({ to = "bot.localhost", from = "localhost", type = "result", id = "q1" });
		assert.is_nil(handler(event(awaited)));
		local other = st.iq({ to = "bot.localhost", from = "localhost", type = "result", id = "q2" });
		assert.is_true(handler(event(other)));
	end);

	it("lets module:send_iq from a full JID see its answer first", function ()
		-- send_iq from a full JID hooks "iq/full" itself, at priority 1, and takes only its own
		-- answer; mod_iq's iq/host handler runs at the default priority 0.
		local fake = load({ component_post_url = dead_url, component_post_stanzas = { "iq" } });
		assert.is_true(fake.hooks["iq/full"].priority < 1);
		assert.is_true(fake.hooks["iq/host"].priority > 0);
		assert.is_true(fake.hooks["iq/bare"].priority > 0);
	end);

	it("on unload stops watching first, then answers what is pending", function ()
		local socket = require "socket";
		local server, url = helpers.silent_webhook();
		local fake, watch = load({ component_post_url = url });
		fake.hooks["message/bare"].handler(event(st.message({ to = "e@bot.localhost", from = "u@localhost/r", id = "p1" })));
		socket.sleep(0.1);
		assert.are.equal(0, #fake.sent);
		fake.unload();
		assert.is_true(watch.closed);
		assert.are.equal(1, #fake.sent);
		local _, condition = fake.sent[1]:get_error();
		assert.are.equal("service-unavailable", condition);
		assert.are.equal("p1", fake.sent[1].attr.id);
		server:close();
	end);

	it("hands who was told it is online over on reload, and tells them the new avatar's hash", function ()
		-- Two JPEG skeletons of different sizes (the segments the native side reads), as files.
		local function jpeg(width)
			local path = os.tmpname();
			local file = assert(io.open(path, "wb"));
			file:write("\255\216\255\224\0\16JFIF\0\1\1\0\0\1\0\1\0\0", "\255\192\0\11\8\0\2\0", string.char(width),
				"\1\1\17\0", "\255\218\0\8\1\1\0\0\63\0", "\18\52\255\217");
			file:close();
			return path;
		end
		local first, second = jpeg(2), jpeg(3);
		local function photo(stanza)
			return stanza:get_child("x", "vcard-temp:x:update"):get_child_text("photo");
		end
		local function start(avatar, saved)
			local fake = load({ component_post_url = dead_url, component_post_avatar = avatar });
			if saved then fake.restore(saved); end
			return fake;
		end
		local old = start(first);
		for _, from in ipairs({ "u@localhost/r", "v@localhost/r" }) do
			old.hooks["presence/bare"].handler(event(st.presence({ to = "echo@bot.localhost", from = from, type = "probe" })));
		end
		local old_hash = photo(old.sent[1]);
		local saved = old.save();
		old.unload();

		local new = start(second, saved);
		assert.are.equal(2, #new.sent);
		for i, to in ipairs({ "u@localhost/r", "v@localhost/r" }) do
			assert.are.same({ from = "echo@bot.localhost/default", to = to }, new.sent[i].attr);
			assert.are_not.equal(old_hash, photo(new.sent[i]));
			assert.are.equal(40, #photo(new.sent[i]));
		end
		-- The same avatar again: taken over, nobody told twice.
		saved = new.save();
		new.unload();
		local again = start(second, saved);
		assert.are.same({}, again.sent);
		os.remove(first);
		os.remove(second);
	end);

	it("hands stanzas in flight over to the new instance on reload", function ()
		local server, url = helpers.silent_webhook();
		local options = { component_post_url = url };
		local old, old_watch = load(options);
		old.hooks["message/bare"].handler(event(st.message({ to = "e@bot.localhost", from = "u@localhost/r", id = "r1" })));

		-- What Prosody's module reload does: save, unload the old instance, load and restore the new.
		local saved = old.save();
		old.unload();
		assert.is_true(old_watch.closed);
		assert.are.equal(0, #old.sent, "the old instance must not answer what it handed over");
		local new, new_watch = load(options);
		new.restore(saved);

		-- Only now does the webhook answer the request the old instance sent.
		server:settimeout(5);
		local conn = assert(server:accept());
		conn:settimeout(5);
		repeat local line = conn:receive("*l"); until line == "" or line == nil;
		local reply = '{"body":"answered after the reload"}';
		conn:send("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "..#reply.."\r\n\r\n"..reply);
		local sent = helpers.wait_sent(new, new_watch, 1);
		assert.are.equal(1, #sent);
		assert.are.equal("answered after the reload", sent[1]:get_child_text("body"));
		conn:close();
		server:close();
	end);

	it("hands what it reported to Prosody's statistics over on reload: each stanza counted once", function ()
		local options = { component_post_url = dead_url, component_post_retries = 0 };
		local old, old_watch = load(options);
		old.hooks["message/bare"].handler(event(st.message({ to = "e@bot.localhost", from = "u@localhost/r", id = "c1" })));
		helpers.wait_sent(old, old_watch, 1);
		local posted = 'component_http__posted_total{host="bot.localhost",kind="message"} 1';
		old.global_hooks["stats-update"]();
		assert.truthy(old.statistics.metric_registry:render():find(posted, 1, true));
		local saved = old.save();
		old.unload();
		-- The new instance adopts the client, whose totals go on: nothing new to add.
		local new = load(options);
		new.restore(saved);
		new.global_hooks["stats-update"]();
		assert.is_nil(new.statistics.metric_registry:render():find("posted_total{", 1, true));
	end);

	it("answers what it handed over if the reloaded module never takes it", function ()
		local server, url = helpers.silent_webhook();
		local old, old_watch = load({ component_post_url = url });
		old.hooks["message/bare"].handler(event(st.message({ to = "e@bot.localhost", from = "u@localhost/r", id = "f1" })));
		old.save();
		old.unload();
		assert.are.equal(0, #old.sent);
		-- The new instance failed to load: no restore. The grace timer fires.
		assert.are.equal(1, #old_watch.tasks);
		old_watch.tasks[1].callback();
		assert.are.equal(1, #old.sent);
		assert.are.equal("f1", old.sent[1].attr.id);
		local _, condition = old.sent[1]:get_error();
		assert.are.equal("service-unavailable", condition);
		server:close();
	end);

	it("leaves an adopted pool alone when the grace timer fires", function ()
		local options = { component_post_url = "http://127.0.0.1:"..helpers.closed_port().."/" };
		local old, old_watch = load(options);
		local saved = old.save();
		old.unload();
		local new = load(options);
		new.restore(saved);
		old_watch.tasks[1].callback();
		assert.are.equal(0, #old.sent);
		for _, log in ipairs(old.logs) do
			assert.is_nil(log.message:find("did not take over", 1, true));
		end
	end);
end);

describe("the push endpoint", function ()
	local dead_url;
	before_each(function ()
		dead_url = "http://127.0.0.1:"..helpers.closed_port().."/hook";
	end);

	local function responder()
		local response = { headers = {}, sent = {} };
		function response:send(body) table.insert(self.sent, { status = self.status_code, body = body }); end
		return response;
	end

	-- POSTs `body` to the endpoint of `fake`; returns the response and what the handler returned.
	local function push(fake, body, token, content_type)
		local response = responder();
		local returned = fake.provided.http.route.POST({
			request = { headers = { authorization = token or "Bearer t0k3n", content_type = content_type or "application/xmpp+xml" },
				body = body },
			response = response,
		});
		return response, returned;
	end

	local function errors_logged(fake)
		local found = {};
		for _, log in ipairs(fake.logs) do
			if log.level == "error" then table.insert(found, log.message); end
		end
		return found;
	end

	it("refuses empty or blank credentials at load, naming the option", function ()
		for _, case in ipairs({
			{ "component_http", { component_post_url = dead_url, component_post_push_credentials = "" }, "component_post_push_credentials" },
			{ "component_http", { component_post_url = dead_url, component_post_push_credentials = " \t" }, "component_post_push_credentials" },
			{ "rest", { rest_credentials = "" }, "rest_credentials" },
			{ "rest", { rest_callback_url = dead_url, rest_credentials = "  " }, "rest_credentials" },
		}) do
			local fake, _, ok, err = helpers.load_shim(case[2], nil, case[1]);
			assert.is_false(ok);
			assert.truthy(err:find(case[3].." is empty", 1, true), err);
			assert.is_nil(fake.provided);
			assert.truthy(errors_logged(fake)[1]:find(case[3], 1, true));
		end
	end);

	it("refuses invalid push options at load, naming the option of the running module", function ()
		for _, case in ipairs({
			{ "component_http", { component_post_push_iq_timeout = -1 }, "component_post_push_iq_timeout" },
			{ "component_http", { component_post_max_push_size = "big" }, "component_post_max_push_size" },
			{ "component_http", { component_post_max_push_iqs = 0 }, "component_post_max_push_iqs" },
			{ "rest", { rest_iq_timeout = 0 }, "rest_iq_timeout" },
			{ "rest", { rest_max_push_size = -1 }, "rest_max_push_size" },
			{ "rest", { rest_max_push_iqs = 257 }, "rest_max_push_iqs" },
		}) do
			local options = case[2];
			if case[1] == "component_http" then
				options.component_post_url, options.component_post_push_credentials = dead_url, "Bearer t0k3n";
			else
				options.rest_credentials = "Bearer t0k3n";
			end
			local fake, _, ok, err = helpers.load_shim(options, nil, case[1]);
			assert.is_false(ok);
			assert.truthy(err:find(case[3].." must be", 1, true), err);
			assert.is_nil(fake.provided);
		end
	end);

	it("never takes an empty Authorization header", function ()
		local fake = load({ rest_credentials = "Bearer t0k3n" }, nil, "rest");
		local response = push(fake, "<message to='a@localhost'/>", "");
		assert.are.equal(401, response.status_code);
		assert.are.same({}, fake.sent);
	end);

	it("answers a body too large for Prosody at its head, and a chunked one it cannot read, saying why", function ()
		local fake = load({ rest_credentials = "Bearer t0k3n" }, nil, "rest");
		assert.is_true(fake.provided.http.streaming_uploads);
		local function head(token)
			local response = responder();
			local returned = fake.provided.http.route.POST({ response = response, request = { partial = true, body = false,
				headers = { authorization = token, content_length = "20971520", content_type = "application/xmpp+xml" } } });
			return response.status_code, returned;
		end
		assert.are.equal(403, head("Bearer wrong")); -- mod_rest: wrong credentials are 403, missing ones 401
		local status, returned = head("Bearer t0k3n");
		assert.are.equal(413, status);
		assert.truthy(returned:find("http_max_content_size", 1, true));
		local response = responder();
		returned = fake.provided.http.route.POST({ response = response, request = { body = "",
			headers = { authorization = "Bearer t0k3n", transfer_encoding = "chunked", content_type = "application/xmpp+xml" } } });
		assert.are.equal(411, response.status_code);
		assert.truthy(returned:find("Content-Length", 1, true));
		assert.are.same({}, fake.sent);
	end);

	it("refuses an iq without a valid type with 400, and routes nothing", function ()
		local fake = load({ rest_credentials = "Bearer t0k3n" }, nil, "rest");
		for _, body in ipairs({ "<iq to='localhost'/>", "<iq to='localhost' type='bogus' id='1'/>" }) do
			local response, returned;
			assert.has_no.errors(function () response, returned = push(fake, body); end);
			assert.are.equal(400, response.status_code, body);
			assert.truthy(returned:find("get, set, result or error", 1, true));
		end
		assert.are.same({}, fake.sent);
	end);

	it("sends a push to a room, and what goes after it, from the JID the bot is in the room as", function ()
		local room, muc_user = "dev@conference.localhost", "http://jabber.org/protocol/muc#user";
		local fake = load({ rest_credentials = "Bearer t0k3n" }, nil, "rest");
		-- The bot joins from news@ by a presence of its own, and the room takes it in.
		assert.are.equal(202, push(fake, "<presence from='news@rest.localhost' to='"..room.."/News'>"
			.."<x xmlns='http://jabber.org/protocol/muc'/></presence>").status_code);
		local on_presence;
		for _, hook in ipairs(fake.all_hooks["presence/bare"]) do
			if hook.priority == 20 then on_presence = hook.handler; end
		end
		assert.is_true(on_presence(event(st.presence({ from = room.."/News", to = "news@rest.localhost" })
			:tag("x", { xmlns = muc_user }):tag("status", { code = "110" }):up():up())));
		fake.sent = {};
		-- A file and its caption pushed without a from: both said as the bot in the room.
		local response = push(fake, '{"to":"'..room..'","type":"groupchat","oob_url":"https://files.example/cat.jpg",'
			..'"body":"My cat."}', nil, "application/json");
		assert.are.equal(202, response.status_code);
		assert.are.equal(2, #fake.sent);
		for _, stanza in ipairs(fake.sent) do
			assert.are.same({ "news@rest.localhost", room, "groupchat" }, { stanza.attr.from, stanza.attr.to, stanza.attr.type });
		end
		assert.are.equal("My cat.", fake.sent[2]:get_child_text("body"));
	end);

	it("answers 500 with the reason when Prosody raises on a pushed stanza", function ()
		local fake = load({ rest_credentials = "Bearer t0k3n" }, nil, "rest");
		fake.send_error = "no route";
		local response, returned;
		assert.has_no.errors(function () response, returned = push(fake, "<message to='a@localhost'/>"); end);
		assert.are.equal(500, response.status_code);
		assert.truthy(returned:find("no route", 1, true));
		assert.truthy(errors_logged(fake)[1]:find("no route", 1, true));
	end);

	it("sends a pushed iq under its own id and returns the answer with the client's", function ()
		local fake = load({ rest_credentials = "Bearer t0k3n", rest_iq_timeout = 7 }, nil, "rest");
		local first = push(fake, "<iq type='get' to='localhost' id='same'><ping xmlns='urn:xmpp:ping'/></iq>");
		local second = push(fake, "<iq type='get' to='localhost' id='same'><ping xmlns='urn:xmpp:ping'/></iq>");
		assert.are.equal(2, #fake.iqs);
		local wire1, wire2 = fake.iqs[1].stanza.attr.id, fake.iqs[2].stanza.attr.id;
		assert.are_not.equal("same", wire1);
		assert.are_not.equal(wire1, wire2);
		assert.are.equal(7, fake.iqs[1].timeout);
		-- The second is answered first; each response gets its own answer.
		fake.iqs[2].resolve({ stanza = st.iq({ type = "result", from = "localhost", to = "rest.localhost", id = wire2 }):tag("two") });
		fake.iqs[1].resolve({ stanza = st.iq({ type = "result", from = "localhost", to = "rest.localhost", id = wire1 }):tag("one") });
		for _, case in ipairs({ { first, "one" }, { second, "two" } }) do
			assert.are.equal(1, #case[1].sent);
			local answer = require "util.xml".parse(case[1].sent[1].body);
			assert.are.equal("same", answer.attr.id);
			assert.is_not_nil(answer:get_child(case[2]));
		end
	end);

	it("answers 504 when a pushed iq times out, and an error the other side sent as it came", function ()
		local fake = load({ rest_credentials = "Bearer t0k3n", rest_iq_timeout = 2.5 }, nil, "rest");
		local late = push(fake, "<iq type='get' to='localhost' id='a'><ping xmlns='urn:xmpp:ping'/></iq>");
		local refused = push(fake, "<iq type='set' to='localhost' id='b'><x xmlns='urn:x'/></iq>");
		fake.iqs[1].reject(require "util.error".new({ type = "wait", condition = "remote-server-timeout", text = "IQ stanza timed out" }));
		local error_reply = st.error_reply(fake.iqs[2].stanza, "cancel", "feature-not-implemented");
		fake.iqs[2].reject(require "util.error".from_stanza(error_reply));
		assert.are.same(504, late.sent[1].status);
		assert.truthy(late.sent[1].body:find("2.5 s (rest_iq_timeout)", 1, true), late.sent[1].body);
		assert.truthy(refused.sent[1].body:find("feature-not-implemented", 1, true));
		assert.truthy(refused.sent[1].body:find("id='b'", 1, true), refused.sent[1].body);
	end);

	it("answers the pushed iqs still waiting with 503 on unload, and only once", function ()
		local fake = helpers.load_shim({ rest_credentials = "Bearer t0k3n" }, nil, "rest");
		local waiting = push(fake, "<iq type='get' to='localhost' id='u1'><ping xmlns='urn:xmpp:ping'/></iq>");
		local answered = push(fake, "<iq type='get' to='localhost' id='u2'><ping xmlns='urn:xmpp:ping'/></iq>");
		fake.iqs[2].resolve({ stanza = st.reply(fake.iqs[2].stanza) });
		fake.unload();
		assert.are.equal(1, #waiting.sent);
		assert.are.equal(503, waiting.sent[1].status);
		assert.are.equal("1", waiting.headers.retry_after);
		assert.are.equal(1, #answered.sent);
		assert.is_nil(answered.sent[1].status, "Prosody's default: 200");
		-- The iq's answer coming late changes nothing.
		fake.iqs[1].resolve({ stanza = st.reply(fake.iqs[1].stanza) });
		assert.are.equal(1, #waiting.sent);
	end);

	it("refuses pushed iqs beyond the cap with 503, and takes them again once one is answered", function ()
		local fake = load({ component_post_url = dead_url, component_post_push_credentials = "Bearer t0k3n",
			component_post_max_push_iqs = 2 });
		local ping = "<iq type='get' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>";
		push(fake, ping);
		push(fake, ping);
		local over, returned = push(fake, ping);
		assert.are.equal(503, over.status_code);
		assert.are.equal("1", over.headers.retry_after);
		assert.truthy(returned:find("component_post_max_push_iqs", 1, true));
		assert.are.equal(2, #fake.iqs);
		-- A message is not an iq waiting: it still goes.
		local message = push(fake, "<message to='a@localhost'/>");
		assert.are.equal(202, message.status_code);
		fake.iqs[1].resolve({ stanza = st.reply(fake.iqs[1].stanza) });
		local again = push(fake, ping);
		assert.is_nil(again.status_code);
		assert.are.equal(3, #fake.iqs);
	end);
end);

describe("the latency histogram", function ()
	-- The metrics library on its own, with the native library's replay but buckets of the spec's,
	-- and a client whose totals the spec sets.
	local function start(totals)
		local fake = helpers.fake_module({});
		fake.timers = {};
		function fake:add_timer(delay, callback) table.insert(self.timers, { delay = delay, callback = callback }); end
		local env = setmetatable({ module = fake, prosody = { hosts = {} } }, { __index = _G });
		local lib = assert(loadfile("lua/component_http_metrics.lib.lua", "t", env))();
		local native = setmetatable({ latency_buckets = { 0.1, 1 } }, { __index = require "component_http_native" });
		local registries = { on_save = function () end, on_restore = function () end };
		lib.report({ registries = registries }, native, { stats = function () return totals; end });
		return fake;
	end

	local function histogram(fake)
		local text = fake.statistics.metric_registry:render();
		local found = {};
		for name, labels, value in text:gmatch("component_http__request_latency_seconds_(%w+){([^}]*)} (%S+)") do
			found[name..(labels:match('le="([^"]+)"') or "")] = tonumber(value);
		end
		return found;
	end

	local totals;
	before_each(function ()
		totals = { posted = {}, outcomes = {}, responses = {}, retries = 0, queued = 0, in_flight = 0, workers = 1,
			endpoint_up = true, latency_buckets = { 0, 0, 0 }, latency_sum = 0, latency_count = 0 };
	end);

	it("gets the native counts and sum through Prosody's public API, each observation once", function ()
		local fake = start(totals);
		-- 3 up to 0.1 s, 2 up to 1 s, 1 above: 0.15 + 1.1 + 4 = 5.25 s.
		totals.latency_buckets, totals.latency_sum, totals.latency_count = { 3, 2, 1 }, 5.25, 6;
		fake.global_hooks["stats-update"]();
		fake.global_hooks["stats-update"]();
		local h = histogram(fake);
		assert.are.same({ 3, 5, 6, 6 }, { h["bucket0.1"], h["bucket1"], h["bucket+Inf"], h.count });
		assert.is_true(math.abs(h.sum - 5.25) < 1e-9, h.sum);
		totals.latency_buckets, totals.latency_sum, totals.latency_count = { 3, 4, 1 }, 6.25, 8;
		fake.global_hooks["stats-update"]();
		h = histogram(fake);
		assert.are.same({ 3, 7, 8, 8 }, { h["bucket0.1"], h["bucket1"], h["bucket+Inf"], h.count });
		assert.is_true(math.abs(h.sum - 6.25) < 1e-9, h.sum);
		assert.are.same({}, fake.timers);
	end);

	it("spreads a large backlog over main loop turns, and ends with the native sum", function ()
		local fake = start(totals);
		totals.latency_buckets, totals.latency_sum, totals.latency_count = { 12000, 0, 1 }, 12000 * 0.05 + 2, 12001;
		fake.global_hooks["stats-update"]();
		assert.are.equal(5000, histogram(fake).count);
		assert.are.equal(1, #fake.timers);
		fake.global_hooks["stats-update"](); -- a collection meanwhile does not replay twice
		assert.are.equal(5000, histogram(fake).count);
		local again = fake.timers[1].callback();
		assert.is_number(again);
		assert.are.equal(10000, histogram(fake).count);
		assert.is_nil(fake.timers[1].callback());
		local h = histogram(fake);
		assert.are.same({ 12000, 12000, 12001, 12001 }, { h["bucket0.1"], h["bucket1"], h["bucket+Inf"], h.count });
		assert.is_true(math.abs(h.sum - 602) < 1e-6, h.sum);
	end);
end);
