-- The native library's conversions, checked against Prosody's own util.stanza and util.xml.
require "spec.helpers"; -- sets the paths to Prosody's libraries and the native library
local st = require "util.stanza";
local xml = require "util.xml";
local native = require "component_http_native";

-- Stanzas as Prosody builds them; each must serialize exactly as tostring() does.
local function golden_stanzas()
	local nested = st.message({ to = "echo@bot.localhost", from = "u@localhost/r", type = "chat", id = "a'b\"c" })
		:text_tag("body", "1 < 2 & 3 > 2 \"quoted\" 'single' \240\159\152\128")
		:tag("x", { xmlns = "urn:x" }):tag("y", { xmlns = "urn:x" }):text("same ns"):up()
		:tag("z", { xmlns = "urn:z" }):up():up()
		:tag("active", { xmlns = "http://jabber.org/protocol/chatstates" }):up();
	local lang = st.message({ ["xml:lang"] = "en", to = "bot.localhost" }):text_tag("body", "hi");
	local ns_attr = st.stanza("iq", { type = "get", id = "1", ["urn:one\1key"] = "v&", ["urn:two\1key"] = "w" })
		:tag("query", { xmlns = "jabber:iq:version" });
	local mixed = st.message({ to = "x@bot.localhost" }):text("lead "):tag("b"):text("bold"):up():text(" tail");
	local parsed = xml.parse("<message xmlns='jabber:client' to='a@b'><body>from the parser</body><x xmlns='urn:x' a='1'/></message>");
	local presence = st.presence({ to = "echo@bot.localhost", type = "subscribe" });
	local empty_text = st.message({}):text_tag("body", "");
	return { nested, lang, ns_attr, mixed, parsed, presence, empty_text, st.error_reply(nested, "cancel", "gone", "bye") };
end

describe("native.serialize", function ()
	it("writes every stanza byte for byte as Prosody's tostring()", function ()
		for i, stanza in ipairs(golden_stanzas()) do
			assert.are.equal(tostring(stanza), native.serialize(stanza), "stanza #"..i);
		end
	end);

	it("refuses tables that are not stanzas, with a reason", function ()
		assert.has_error(function () native.serialize({ attr = {} }) end);
		assert.has_error(function () native.serialize({ name = "message", attr = { to = 42 } }) end);
		local deep = st.message({});
		for _ = 1, 300 do deep:tag("a"); end
		local ok, err = pcall(native.serialize, deep);
		assert.is_false(ok);
		assert.matches("deeper than", err);
	end);
end);

-- Serialization with attributes sorted: two trees are equal whatever order their attribute
-- tables happen to iterate in.
local function canonical(node)
	if type(node) == "string" then return st.xml_escape(node); end
	local keys = {};
	for k in pairs(node.attr) do table.insert(keys, k); end
	table.sort(keys);
	local out = { "<", node.name };
	for _, k in ipairs(keys) do table.insert(out, (" %s='%s'"):format(k, st.xml_escape(node.attr[k]))); end
	table.insert(out, ">");
	for _, child in ipairs(node) do table.insert(out, canonical(child)); end
	table.insert(out, "</"..node.name..">");
	return table.concat(out);
end

describe("native.parse", function ()
	local samples = {
		"<message xmlns='jabber:client' type='chat' xml:lang='en'><body>a &amp; b &#x263A;</body><x xmlns='urn:x'><y/></x></message>",
		"<iq type='result'><query xmlns='jabber:iq:version'><name>bot</name><version>1</version></query></iq>",
		"<presence><show>away</show><status>out &lt;here&gt;</status></presence>",
		"<message><body><![CDATA[<raw> & ]]></body></message>",
	};

	it("builds the same tree as Prosody's util.xml", function ()
		for _, text in ipairs(samples) do
			local ours = assert(native.parse(text, st.stanza_mt));
			local theirs = assert(xml.parse(text));
			assert.are.equal(canonical(theirs), canonical(ours));
			assert.is_true(st.is_stanza(ours));
			assert.are.same(#theirs.tags, #ours.tags);
		end
	end);

	it("gives tables that Prosody's stanza methods work on", function ()
		local s = assert(native.parse(samples[1], st.stanza_mt));
		assert.are.equal("a & b \226\152\186", s:get_child_text("body"));
		assert.are.equal("x", s:get_child("x", "urn:x").name);
		local copy = st.clone(s);
		assert.are.same(s, copy);
		assert.are.equal("message", st.reply(s).name);
	end);

	it("refuses hostile XML with a reason instead of a tree", function ()
		for _, bad in ipairs({
			"<!DOCTYPE m [<!ENTITY a 'x'>]><message>&a;</message>",
			"<message><body>&undefined;</body></message>",
			"<stream:stream xmlns:stream='http://etherx.jabber.org/streams'/>",
			"<message>",
			"not xml",
		}) do
			local result, err = native.parse(bad, st.stanza_mt);
			assert.is_nil(result, bad);
			assert.is_string(err);
		end
	end);
end);

describe("native.new", function ()
	it("refuses bad options and names the option", function ()
		local cases = {
			[{}] = "component_post_url",
			[{ component_post_url = "ftp://x/" }] = "component_post_url",
			[{ component_post_url = "http://h/", component_post_stanzas = { "chat" } }] = "component_post_stanzas",
			[{ component_post_url = "http://h/", post_stanza_types = 7 }] = "post_stanza_types",
			[{ component_post_url = "http://h/", component_post_workers = -1 }] = "component_post_workers",
			[{ component_post_url = "http://h/", component_post_timeout = 0 }] = "component_post_timeout",
		};
		for options, name in pairs(cases) do
			local client, err = native.new(options, st.stanza_mt);
			assert.is_nil(client);
			assert.matches(name, err, 1, true);
		end
	end);

	it("closes twice without harm and answers nothing when idle", function ()
		local client = assert(native.new({ component_post_url = "http://127.0.0.1:9/" }, st.stanza_mt));
		assert.are.equal(0, select("#", client:drain()), "nothing waiting: drain returns nothing");
		local stanzas, logs = client:close();
		assert.are.same({}, stanzas);
		assert.is_nil(logs);
		stanzas = client:close();
		assert.are.same({}, stanzas);
		assert.has_error(function () client:submit(st.message({ to = "a@bot.localhost" })) end);
	end);
end);
