-- The native library's conversions, checked against Prosody's own util.stanza and util.xml.
local helpers = require "spec.helpers"; -- sets the paths to Prosody's libraries and the native library
local st = require "util.stanza";
local xml = require "util.xml";
local native = require "component_http_native";
local canonical = helpers.canonical;

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

	-- Whatever the native parser accepts, it must write back as XML that Prosody's own
	-- namespace-aware parser (expat) reads as the same tree: a stanza that is ill-formed on
	-- the wire disconnects the user who receives it.
	it("writes only what util.xml reads back as the same tree", function ()
		local inputs = {
			"<a:b:c xmlns:a='urn:x'/>",
			"<message xmlns:a='urn:x'><a:b:c/></message>",
			"<message xmlns:a='urn:x' a:b:c='v'/>",
			"<message xmlns:a='urn:x' a:k='v' xmlns:b='urn:x' b:k='w'/>",
			"<message xmlns='http://www.w3.org/2000/xmlns/'/>",
			"<message><x xmlns='http://www.w3.org/XML/1998/namespace'/></message>",
			"<message xmlns:a='http://www.w3.org/XML/1998/namespace' a:lang='en'/>",
			"<message xmlns:a='http://www.w3.org/2000/xmlns/' a:k='v'/>",
			"<message xmlns:xml='http://www.w3.org/XML/1998/namespace' xml:lang='en'/>",
			"<message xml:lang='en' xml:space='preserve'><body xml:lang='de'>x</body></message>",
			"<message xmlns='jabber:client'><x xmlns=''><y/></x></message>",
			"<message xmlns:a='urn:a'><a:x><a:y a:k='1'/></a:x></message>",
			"<message xmlns:a='urn:a'><b xmlns:a='urn:b'><a:c/></b><a:c/></message>",
			"<iq type='get'><q xmlns='ja&quot;&lt;ber'/></iq>",
			"<message><body>&#x1F600;&#9;&#10;&#13;</body></message>",
			"<message xmlns:x='urn:x' x:xmlns='v'/>",
			"<message><xml-stuff/><_a/><a.b-c/></message>",
		};
		for _, text in ipairs(inputs) do
			local ours = native.parse(text, st.stanza_mt);
			if ours then
				local written = tostring(ours);
				local again, err = xml.parse(written);
				assert.is_truthy(again, ("%s was written as %s, which util.xml refuses: %s"):format(text, written, tostring(err)));
				assert.are.equal(canonical(ours), canonical(again), text);
			end
		end
	end);

	it("refuses hostile XML, and names and namespaces it could not write well-formed, with a reason", function ()
		for _, bad in ipairs({
			"<a:b:c xmlns:a='urn:x'/>",
			"<message xmlns:a='urn:x' a:b:c='v'/>",
			"<message xmlns='http://www.w3.org/2000/xmlns/'/>",
			"<message><x xmlns='http://www.w3.org/XML/1998/namespace'/></message>",
			"<message xmlns:a='urn:x' a:k='v' xmlns:b='urn:x' b:k='w'/>",
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

describe("native.prep_jid", function ()
	local jid = require "util.jid";
	it("prepares JIDs as Prosody's util.jid.prep does, and refuses what it refuses", function ()
		local samples = {
			"alice@localhost", "Alice@LocalHost/Phone", "localhost", "example.com.", "a@b/c@d/e",
			"bot.localhost/r", "@localhost", "a@", "a@b@c", "localhost/", "a@/r", ".", "a b@localhost",
			"a\"b@localhost", "a:b@localhost", "a<b@localhost", "Ünïcødé@Example.org/Ŕesource",
			"a@xn--bcher-kva.example", "a@local host", "a@\226\128\139", "a@b/\226\128\139",
			("x"):rep(1023).."@localhost", ("x"):rep(1024).."@localhost", "a@"..("b"):rep(1024),
		};
		for _, text in ipairs(samples) do
			local theirs = jid.prep(text);
			-- A part prepared to nothing ("a@\226\128\139" is "a@" to Prosody): not a JID to us.
			if theirs and (theirs:match("[@/]$") or theirs:match("^@")) then theirs = nil; end
			assert.are.equal(theirs, native.prep_jid(text), text);
		end
		-- The one rule stricter than Prosody's: no control characters in a domain.
		assert.are.equal("a@b\nc", jid.prep("a@b\nc"));
		assert.is_nil(native.prep_jid("a@b\nc"));
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
			local client, err = native.new(options, st.stanza_mt, "component_http", "bot.localhost");
			assert.is_nil(client);
			assert.matches(name, err, 1, true);
		end
	end);

	it("closes twice without harm and answers nothing when idle", function ()
		local client = assert(native.new({ component_post_url = "http://127.0.0.1:9/" }, st.stanza_mt, "component_http",
			"bot.localhost"));
		assert.are.equal(0, select("#", client:drain()), "nothing waiting: drain returns nothing");
		local stanzas, logs = client:close();
		assert.are.same({}, stanzas);
		assert.is_nil(logs);
		stanzas = client:close();
		assert.are.same({}, stanzas);
		assert.has_error(function () client:submit(st.message({ to = "a@bot.localhost" })) end);
	end);
end);
