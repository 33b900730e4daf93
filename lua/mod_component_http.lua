-- mod_component_http: a component whose stanzas are POSTed as JSON to a webhook, and whose
-- replies come back from it; with push credentials, the bot can also send stanzas of its own
-- (POST /component_http). The Prosody glue both this module and mod_rest use is in
-- component_http.lib.lua and its feature libraries (component_http_*.lib.lua); the conversions,
-- the decisions and the HTTP work are in the native library component_http_native (Rust), which
-- runs the requests on its own threads and wakes Prosody through a file descriptor when answers
-- are ready.

local shim = module:require "component_http";

local native = shim.load_native();
-- The option names and the push path are the native profile's; the choices are this module's.
local profile = shim.profile(native, "component_http", {
	push_accepts_json = true; -- the shape of a webhook reply, or a stanza as XML
	push_answers_json = true; -- an iq's answer in the shape of a webhook request
	answer_presence = true; -- always online, unless presence is posted
});
local options, push, rooms, avatar = shim.read_options(native, profile);
rooms = shim.start_rooms(rooms);
-- Files a bot sends: uploaded to the server's upload service, then sent as their URL.
shim.uploads = module:require "component_http_upload".start(shim, native, profile, options);

local client, forwarded = module:require "component_http_client".start(shim, native, profile, options, rooms);
module:require "component_http_identity".start(shim, native, profile, client, forwarded, avatar);
module:require "component_http_metrics".report(shim, native, client);

if push.credentials then
	module:require "component_http_push".serve(shim, native, profile, push, client, rooms);
end
