-- mod_rest: stanzas in over HTTP (POST /rest, XML or JSON; an iq waits for its answer, returned
-- in the response; POST /rest/echo returns the stanza built, sending nothing) and, with a
-- callback URL, stanzas to it POSTed there as XML (or JSON, as the callback content type option
-- says), the answer being the reply. A drop-in for the community module of the same name, on the
-- same native core as mod_component_http; the shared glue is in component_http.lib.lua and its
-- feature libraries, mod_rest's own (where it loads, who may send as whom) in
-- component_http_rest.lib.lua.
--
-- As a Component it is a bot of its own; on a VirtualHost clients send as the accounts they
-- authenticate as, and the callback gets only stanzas to the host itself that nothing else
-- handles: the users' own traffic is never taken from them.

local shim = module:require "component_http";

local native = shim.load_native();
-- The option names and the push path are the native profile's; the choices are this module's.
local profile = shim.profile(native, "rest", {
	push_accepts_json = true; -- the JSON mapping of component_http's replies, or a stanza as XML
	push_answers_json = false;
	push_negotiates = true; -- answered in JSON when the request is JSON or its Accept asks, else XML
	answer_presence = false;
});
local options, push, rooms, avatar = shim.read_options(native, profile);
local rest_lib = module:require "component_http_rest";
local rest = rest_lib.start(shim, native, options, push);
profile.callback_events, profile.callback_priority = rest.events, rest.callback_priority;
profile.callback_sender = rest.callback_sender;

if rest.on_component then
	rooms = shim.start_rooms(rooms);
else
	-- A VirtualHost is no bot in group chats (its rooms option is refused): its users join
	-- rooms themselves, and what rooms send them is theirs.
	rooms = { perform = function () end; forward_presence = function () end };
end

-- Files a bot sends: uploaded to the server's upload service, then sent as their URL.
shim.uploads = module:require "component_http_upload".start(shim, native, profile, options);

-- Without a callback URL the module only sends: stanzas to it are left to Prosody, which answers
-- them as it answers stanzas nobody handles. (The client first: a module that fails to load
-- leaves behind what it registered.)
local client; -- none without a callback URL: nothing is answered, so nothing streams
if options[profile.url_option] ~= nil then
	local forwarded;
	client, forwarded = module:require "component_http_client".start(shim, native, profile, options, rooms);
	if rest.on_component then
		-- The bot's identity and vCard; on a VirtualHost those are the server's and the users'.
		module:require "component_http_identity".start(shim, native, profile, client, forwarded, avatar);
	end
	module:require "component_http_metrics".report(shim, native, client);
	rest_lib.probe(native, client, options[profile.url_option], shim.quote, profile.content_type_option);
end

module:require "component_http_push".serve(shim, native, profile, push, client, rooms, rest);
