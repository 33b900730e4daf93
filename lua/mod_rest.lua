-- mod_rest: stanzas in over HTTP (POST /rest, XML or JSON; an iq waits for its answer, returned
-- in the response) and, with a callback URL, stanzas to the component POSTed there as XML (or
-- JSON, as the callback content type option says), the answer being the reply. A drop-in for
-- the community module of the same name, on the same native core as mod_component_http; the
-- shared glue is in component_http.lib.lua and its feature libraries.

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
rooms = shim.start_rooms(rooms);

-- Without a callback URL the module only sends: stanzas to it are left to Prosody, which answers
-- them as it answers stanzas nobody handles. (The client first: a module that fails to load
-- leaves behind what it registered.)
local client; -- none without a callback URL: nothing is answered, so nothing streams
if options[profile.url_option] ~= nil then
	local forwarded;
	client, forwarded = module:require "component_http_client".start(shim, native, profile, options, rooms);
	module:require "component_http_identity".start(shim, native, profile, client, forwarded, avatar);
	module:require "component_http_metrics".report(shim, native, client);
elseif not push.credentials then
	module:log("warn", "Neither %s nor %s is set: this component does nothing", profile.url_option, push.names.credentials);
	return;
end

if push.credentials then
	module:require "component_http_push".serve(shim, native, profile, push, client, rooms);
end
