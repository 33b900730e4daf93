-- Rich messages (issue 19) through the native library's real entry points, checked against
-- Prosody's own util.stanza (what a client's message looks like, what ours must equal) and
-- util.xml (what we send must read back as the same tree).
local helpers = require "spec.helpers"; -- sets the paths to Prosody's libraries and the native library
local st = require "util.stanza";
local xml = require "util.xml";
local json = require "util.json";
local native = require "component_http_native";

local HOST = "bot.localhost";
local URL = "https://upload.localhost/f/cat.jpg";

-- The request body component_http POSTs for a stanza, decoded.
local function request_of(stanza)
	return json.decode(native.request_json(stanza));
end

-- A message from a user to the bot, as Prosody hands it to the module.
local function from_user(id)
	return st.message({ to = "echo@"..HOST, from = "alice@localhost/phone", type = "chat", id = id });
end

-- What a JSON push (the shape of a reply) makes, as the stanzas the Lua would send.
local function pushed(fields)
	local stanza, status, why, after = native.push(json.encode(fields), "application/json", HOST, true, 65536,
		st.stanza_mt);
	assert(stanza, why and (status..": "..why));
	return stanza, after and after[1], after and after[2];
end

-- A stanza as a client reads it: Prosody's serialization parsed by util.xml (which must accept
-- it), attributes sorted (see helpers.canonical) so that trees built by util.stanza and by us
-- compare whatever order their attribute tables iterate in.
local function written(stanza)
	return helpers.canonical(assert(xml.parse(tostring(stanza))));
end

describe("a request", function ()
	it("carries a file as oob_url", function ()
		local photo = from_user("m1"):text_tag("body", URL):tag("x", { xmlns = "jabber:x:oob" }):text_tag("url", URL);
		local request = request_of(photo);
		assert.are.equal(URL, request.oob_url);
		assert.are.equal(URL, request.body);
		assert.are.equal(tostring(photo), request.stanza);
	end);

	it("carries a correction as replace", function ()
		local fixed = from_user("m2"):text_tag("body", "fixed")
			:tag("replace", { xmlns = "urn:xmpp:message-correct:0", id = "m1" });
		assert.are.equal("m1", request_of(fixed).replace);
	end);

	it("carries reactions as their message's id and the emoji", function ()
		local reaction = from_user("m3"):tag("reactions", { xmlns = "urn:xmpp:reactions:0", id = "b1" })
			:text_tag("reaction", "\240\159\145\141"):up():tag("store", { xmlns = "urn:xmpp:hints" });
		local request = request_of(reaction);
		assert.are.same({ id = "b1", reactions = { "\240\159\145\141" } }, request.reactions);
		assert.is_nil(request.body);
	end);

	it("carries a reply as what it answers, and the body without the quote", function ()
		local quote = "> \240\159\144\177 a cat?\n"; -- 11 code points, 14 bytes
		local reply = from_user("m4"):text_tag("body", quote.."Yes!")
			:tag("reply", { xmlns = "urn:xmpp:reply:0", id = "b2", to = "echo@"..HOST }):up()
			:tag("fallback", { xmlns = "urn:xmpp:fallback:0", ["for"] = "urn:xmpp:reply:0" })
			:tag("body", { start = "0", ["end"] = "11" });
		local request = request_of(reply);
		assert.are.same({ id = "b2", to = "echo@"..HOST }, request.reply);
		assert.are.equal("Yes!", request.body);
	end);

	it("carries no stanza_id outside a room, and no rich field for a plain message", function ()
		local stamped = from_user("m5"):text_tag("body", "hi")
			:tag("stanza-id", { xmlns = "urn:xmpp:sid:0", by = "localhost", id = "forged" });
		local request = request_of(stamped);
		for _, key in ipairs({ "stanza_id", "oob_url", "replace", "reactions", "reply" }) do
			assert.is_nil(request[key], key);
		end
	end);
end);

describe("a reply or push", function ()
	local to = { to = "alice@localhost" };
	local function with(fields)
		for k, v in pairs(to) do fields[k] = v; end
		return fields;
	end

	it("sends a file as its URL, and a caption right after it", function ()
		local file, caption = pushed(with({ oob_url = URL, body = "My cat." }));
		local expected = st.message({ type = "chat", to = "alice@localhost", from = HOST })
			:text_tag("body", URL):tag("x", { xmlns = "jabber:x:oob" }):text_tag("url", URL);
		assert.are.equal(written(expected), written(file));
		assert.are.equal(written(st.message({ type = "chat", to = "alice@localhost", from = HOST })
			:text_tag("body", "My cat.")), written(caption));
		local alone, none = pushed(with({ oob_url = URL }));
		assert.are.equal(written(expected), written(alone));
		assert.is_nil(none);
	end);

	it("sends a correction", function ()
		local fixed = pushed(with({ body = "fixed", replace = "b1" }));
		assert.are.equal(written(st.message({ type = "chat", to = "alice@localhost", from = HOST })
			:text_tag("body", "fixed"):tag("replace", { id = "b1", xmlns = "urn:xmpp:message-correct:0" })),
			written(fixed));
		assert.are.equal("b1", fixed:get_child("replace", "urn:xmpp:message-correct:0").attr.id);
	end);

	it("sends a reaction with more to say as a message of its own, first", function ()
		local reaction, file, caption = pushed(with({ reactions = { id = "m1", reactions = { "\240\159\145\141" } },
			oob_url = URL, body = "Mine." }));
		assert.are.equal(written(st.message({ type = "chat", to = "alice@localhost", from = HOST })
			:tag("reactions", { id = "m1", xmlns = "urn:xmpp:reactions:0" }):text_tag("reaction", "\240\159\145\141"):up()
			:tag("store", { xmlns = "urn:xmpp:hints" })), written(reaction));
		assert.are.equal(URL, file:get_child_text("body"));
		assert.are.equal(URL, file:get_child("x", "jabber:x:oob"):get_child_text("url"));
		assert.are.equal("Mine.", caption:get_child_text("body"));
		assert.are.equal(HOST, caption.attr.from);
	end);

	it("sends reactions with the store hint", function ()
		local reaction = pushed(with({ reactions = { id = "m1", reactions = { "\240\159\145\141", "\240\159\142\137" } } }));
		local reactions = reaction:get_child("reactions", "urn:xmpp:reactions:0");
		assert.are.equal("m1", reactions.attr.id);
		local emoji = {};
		for r in reactions:childtags("reaction") do table.insert(emoji, r:get_text()); end
		assert.are.same({ "\240\159\145\141", "\240\159\142\137" }, emoji);
		assert.is_not_nil(reaction:get_child("store", "urn:xmpp:hints"));
		assert.is_nil(reaction:get_child("body"));
		written(reaction);
	end);

	it("sends a reply with a fallback quote whose end counts code points", function ()
		local reply = pushed(with({ body = "Yes!", reply = { id = "m4", to = "alice@localhost/phone",
			quote = "\240\159\144\177 a cat?" } }));
		local text = reply:get_child_text("body");
		assert.are.equal("> \240\159\144\177 a cat?\nYes!", text);
		local r = reply:get_child("reply", "urn:xmpp:reply:0");
		assert.are.same({ id = "m4", to = "alice@localhost/phone", xmlns = "urn:xmpp:reply:0" }, r.attr);
		local range = reply:get_child("fallback", "urn:xmpp:fallback:0"):get_child("body");
		assert.are.equal("urn:xmpp:reply:0", reply:get_child("fallback", "urn:xmpp:fallback:0").attr["for"]);
		-- Code points, as XEP-0428 counts: the emoji is one (four bytes).
		assert.are.equal("11", range.attr["end"]);
		assert.are.equal("0", range.attr.start);
		-- And what we send reads back, on the request side, as the body the bot wrote.
		local back = xml.parse(tostring(reply));
		back.attr.to, back.attr.from = "echo@"..HOST, "alice@localhost/phone";
		assert.are.equal("Yes!", request_of(back).body);
	end);

	it("refuses a malformed field with a message naming it", function ()
		for field, value in pairs({
			oob_url = "ftp://upload.localhost/f",
			replace = 7,
			reactions = { id = "m1", reactions = { "" } },
			reply = { id = 5 },
		}) do
			local stanza, status, why = native.push(json.encode(with({ [field] = value })), "application/json", HOST,
				true, 65536, st.stanza_mt);
			assert.is_nil(stanza, field);
			assert.are.equal(400, status, field);
			assert.matches("'"..field, why, 1, true);
		end
	end);
end);

describe("mod_rest's JSON (the push's profile argument)", function ()
	local REST = "rest.localhost";
	local function push_rest(fields)
		return native.push(json.encode(fields), "application/json", REST, true, 65536, st.stanza_mt, "rest");
	end

	it("infers the kind from the fields: a ping is an iq, show a presence", function ()
		local ping = assert(push_rest({ to = "localhost", ping = true }));
		assert.are.same({ "iq", "get", "localhost", REST }, { ping.name, ping.attr.type, ping.attr.to, ping.attr.from });
		assert.truthy(ping:get_child("ping", "urn:xmpp:ping"));
		local away = assert(push_rest({ kind = "presence", to = "alice@localhost", show = "away" }));
		assert.are.same(written(st.presence({ to = "alice@localhost", from = REST }):text_tag("show", "away")),
			written(away));
	end);

	it("refuses a field it cannot map, naming it; component_http ignores it", function ()
		local stanza, status, why = push_rest({ to = "alice@localhost", body = "x", sticker = 1 });
		assert.is_nil(stanza);
		assert.are.equal(400, status);
		assert.matches("'sticker'", why, 1, true);
		assert.truthy(pushed({ to = "alice@localhost", body = "x", sticker = 1 }));
	end);

	it("answers in the community module's names", function ()
		local presence = st.presence({ to = REST, from = "alice@localhost/phone" })
			:tag("nick", { xmlns = "http://jabber.org/protocol/nick" }):text("Ann"):up();
		local rest = json.decode(native.request_json(presence, "rest"));
		assert.are.same({ "available", "Ann" }, { rest.type, rest.nick });
		local ours = request_of(presence);
		assert.are.same({}, { ours.type, ours.nick });
	end);
end);
