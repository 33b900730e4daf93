-- mod_component_http: a component whose stanzas are POSTed as JSON to a webhook, and whose
-- replies come back from it; with component_post_push_credentials, the bot can also send
-- stanzas of its own (POST /component_http). The Prosody glue both this module and mod_rest
-- use is in component_http.lib.lua; the conversions and the HTTP work are in the native
-- library component_http_native (Rust), which runs the requests on its own threads and wakes
-- Prosody through a file descriptor when answers are ready.

local component_http = module:require "component_http";

local profile = {
	native = "component_http"; -- the options component_post_*, the JSON contract
	url_option = "component_post_url";
	push_path = "component_http";
	push_accepts_json = true; -- the shape of a webhook reply, or a stanza as XML
	push_answers_json = true; -- an iq's answer in the shape of a webhook request
	answer_presence = true; -- always online, unless presence is posted
};

local native = component_http.load_native();
local options, push, rooms = component_http.read_options(native, profile);
component_http.start_rooms(rooms);

local client = component_http.start_client(native, profile, options);
component_http.report_metrics(native, client);

if push.credentials then
	component_http.serve_push(native, profile, push, client);
end
