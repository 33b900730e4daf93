-- The group chat glue of the shim (component_http_rooms.lib.lua) in a fake Prosody module
-- environment, with the real native library: what it sends, hooks and stores.
local helpers = require "spec.helpers";
local st = require "util.stanza";

local ROOM = "dev@conference.localhost";
local MUC = "http://jabber.org/protocol/muc";

local load = helpers.loader(after_each);

local function room_handler(fake, event)
	for _, hook in ipairs(fake.all_hooks[event] or {}) do
		if hook.priority == 20 then return hook.handler; end
	end
end

describe("the rooms of mod_component_http", function ()
	local url;
	before_each(function ()
		url = "http://127.0.0.1:"..helpers.closed_port().."/hook";
	end);

	it("refuses to load with an invalid room, naming the option", function ()
		local fake, _, ok, err = load({ component_post_url = url, component_post_rooms = { "conference.localhost" } });
		assert.is_false(ok);
		assert.matches("component_post_rooms has \"conference.localhost\"", err, 1, true);
		assert.are.equal("error", fake.logs[1].level);
	end);

	it("hooks nothing for rooms and joins none without any", function ()
		local fake, _, ok = load({ component_post_url = url });
		assert.is_true(ok);
		assert.is_nil(room_handler(fake, "presence/full"));
		fake.global_hooks["server-started"]();
		assert.are.same({}, fake.sent);
	end);

	it("joins the configured rooms once the server has started, asking for no history", function ()
		local fake, _, ok = load({ component_post_url = url, component_post_rooms = { ROOM.."/Helper" } });
		assert.is_true(ok);
		assert.are.same({}, fake.sent, "nothing before the server has started");
		fake.global_hooks["server-started"]();
		local join = fake.sent[1];
		assert.are.equal(ROOM.."/Helper", join.attr.to);
		assert.are.equal("bot.localhost", join.attr.from);
		-- Found the way Prosody's MUC looks for it (in the MUC namespace), or the room sends its history.
		assert.are.equal("0", join:get_child("x", MUC):get_child("history", MUC).attr.maxstanzas);
		assert.is.near(30, fake.timers[#fake.timers].delay, 1); -- the join's deadline, the last timer set
	end);

	it("takes the bot's self-presence, then leaves on unload", function ()
		local fake = load({ component_post_url = url, component_post_rooms = { ROOM.."/Helper" } });
		fake.global_hooks["server-started"]();
		local self_presence = st.presence({ from = ROOM.."/Helper", to = "bot.localhost" })
			:tag("x", { xmlns = MUC.."#user" }):tag("status", { code = "110" }):up():up();
		assert.is_true(room_handler(fake, "presence/host")({ stanza = self_presence }));
		-- Another occupant's presence is not about the bot: consumed (presence is not posted), not answered.
		local sent = #fake.sent;
		assert.is_true(room_handler(fake, "presence/host")({ stanza = st.presence({ from = ROOM.."/alice", to = "bot.localhost" }) }));
		assert.are.equal(sent, #fake.sent);
		-- Not from a room: left to the other handlers.
		assert.is_nil(room_handler(fake, "presence/host")({ stanza = st.presence({ from = "alice@localhost/x", to = "bot.localhost" }) }));
		fake.unload();
		local leave = fake.sent[#fake.sent];
		assert.are.same({ ROOM.."/Helper", "unavailable" }, { leave.attr.to, leave.attr.type });
	end);

	it("quotes a room's error text in its log line", function ()
		local fake = load({ component_post_url = url, component_post_rooms = { ROOM.."/Helper" } });
		fake.global_hooks["server-started"]();
		-- The bot's join created the room (status 201): it opens it with an owner iq.
		local created = st.presence({ from = ROOM.."/Helper", to = "bot.localhost" })
			:tag("x", { xmlns = MUC.."#user" }):tag("status", { code = "110" }):up():tag("status", { code = "201" }):up():up();
		room_handler(fake, "presence/host")({ stanza = created });
		local iq = fake.iqs[#fake.iqs];
		assert.are.equal(ROOM, iq.stanza.attr.to);
		local forged = "no\nJan 01 00:00:00 bot.localhost:component_http\terror\tforged";
		iq.reject({ text = forged, condition = "forbidden" });
		local logged;
		for _, entry in ipairs(fake.logs) do
			if entry.message:find("Could not open the new room", 1, true) then logged = entry.message; end
		end
		assert.truthy(logged, "the refusal is logged");
		assert.is_nil(logged:find("[\n\t]"), "one line, its control characters escaped: "..logged);
		assert.truthy(logged:find("no\\nJan 01", 1, true), logged);
	end);

	-- A presence nested beyond the parse limits: an occupant joining with it, any user sending it,
	-- or the room's own self-presence for the bot carrying it.
	local function deep(attrs, depth)
		local presence = st.presence(attrs);
		for i = 1, depth do
			presence:tag("n", { xmlns = "urn:example:deep", level = tostring(i) });
		end
		return presence:reset();
	end

	it("takes any presence, however deep, without an error in Prosody's routing", function ()
		local fake = load({ component_post_url = url, component_post_rooms = { ROOM.."/Helper" } });
		fake.global_hooks["server-started"]();
		local handler = room_handler(fake, "presence/full");
		local occupant = deep({ from = ROOM.."/mallory", to = "bot.localhost/x" }, 40);
		local ok, consumed = pcall(handler, { stanza = occupant });
		assert.is_true(ok, tostring(consumed));
		assert.is_true(consumed, "another occupant's presence: taken, not answered");
		local user = deep({ from = "mallory@localhost/x", to = "bot.localhost/x" }, 40);
		ok, consumed = pcall(handler, { stanza = user });
		assert.is_true(ok, tostring(consumed));
		assert.is_nil(consumed, "not from a room: left to the other handlers");
		-- The bot's own self-presence is still read as one: the room's status codes are at the top.
		local self_presence = deep({ from = ROOM.."/Helper", to = "bot.localhost" }, 40)
			:tag("x", { xmlns = MUC.."#user" }):tag("status", { code = "110" }):up():up();
		ok, consumed = pcall(handler, { stanza = self_presence });
		assert.is_true(ok, tostring(consumed));
		assert.is_true(consumed);
		assert.truthy(fake.logs[#fake.logs].message:find("joined "..ROOM, 1, true), fake.logs[#fake.logs].message);
		for _, entry in ipairs(fake.logs) do
			assert.are_not.equal("error", entry.level, entry.message);
		end
	end);

	it("never lets an error out of a room hook into Prosody's routing", function ()
		local fake = load({ component_post_url = url, component_post_rooms = { ROOM.."/Helper" } });
		fake.global_hooks["server-started"]();
		local handler;
		for _, hook in ipairs(fake.all_hooks["message/full"]) do
			if hook.priority == -100 then handler = hook.handler; end
		end
		-- A table the native side refuses to read (a child that is not an element nor text).
		local broken = st.message({ from = ROOM.."/mallory", to = "bot.localhost/x", type = "groupchat" })
			:text_tag("body", "hi");
		table.insert(broken, 42);
		local ok, consumed = pcall(handler, { stanza = broken });
		assert.is_true(ok, tostring(consumed));
		assert.is_true(consumed, "dropped: left to Prosody, it would be answered with an error");
		local logged = fake.logs[#fake.logs];
		assert.are.equal("error", logged.level);
		assert.truthy(logged.message:find("The rooms could not handle a message from \""..ROOM.."/mallory\"", 1, true),
			logged.message);
		assert.is_nil(logged.message:find("\n"), "one line");
	end);
end);
