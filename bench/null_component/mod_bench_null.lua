-- mod_bench_null: the benchmark's floor.
--
-- A component that answers every message locally, in Lua, the way the
-- webhook echo bot would: a new chat message from the swapped addresses
-- whose body is "Did you say <body>?". Nothing leaves the Prosody process,
-- so what the benchmark measures here is Prosody's own cost of receiving a
-- c2s message, routing it to a component and delivering the reply.
--
--   Component "bot.localhost" "bench_null"
--     bench_null_reply = "route"   -- or "origin"
--     bench_null_delay = 1         -- seconds; default 0
--     bench_null_reply_bytes = 1600  -- default 0
--
-- With bench_null_delay, each answer is sent that many seconds later from a
-- Prosody timer: the floor of the slow-bot scenario (bench/slowbot), a bot
-- exactly that slow with no HTTP at all.
--
-- "route" (default) sends the reply with module:send, through Prosody's
-- normal routing, as this repository's module does. "origin" hands it
-- straight to the session the message came from (origin.send), the shortcut
-- the original Lua mod_component_http takes. Error stanzas are never answered.
--
-- With bench_null_reply_bytes, a reply shorter than that is padded with words to that many
-- bytes: the floor of a reply carrying as much text as a streamed answer's stanzas
-- (bench/stream), since Prosody's cost of a stanza grows with its text (escaping, writing).

local st = require "util.stanza";

local reply_via = module:get_option_string("bench_null_reply", "route");
assert(reply_via == "route" or reply_via == "origin", "bench_null_reply must be \"route\" or \"origin\"");
local delay = module:get_option_number("bench_null_delay", 0);
local reply_bytes = math.floor(module:get_option_number("bench_null_reply_bytes", 0));
-- Words like a streamed answer's ("q1:2 "), made once.
local filler = string.rep("word ", math.ceil(reply_bytes / 5));

local function padded(text)
	if #text >= reply_bytes then
		return text;
	end
	return text .. " " .. filler:sub(1, reply_bytes - #text - 1);
end

local function answer(event)
	local origin, stanza = event.origin, event.stanza;
	if stanza.attr.type == "error" then
		return true;
	end
	local body = stanza:get_child_text("body");
	if body == nil then
		return true;
	end
	local reply = st.message({
		to = stanza.attr.from;
		from = stanza.attr.to;
		type = "chat";
	}):tag("body"):text(padded("Did you say " .. body .. "?")):up();
	local function send()
		if reply_via == "origin" then
			origin.send(reply);
		else
			module:send(reply);
		end
	end
	if delay > 0 then
		module:add_timer(delay, send);
	else
		send();
	end
	return true;
end

for _, jid_kind in ipairs({ "host", "bare", "full" }) do
	module:hook("message/" .. jid_kind, answer);
end
