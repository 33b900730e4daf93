-- mod_rest: stanzas in over HTTP (POST /rest, XML or JSON; an iq waits for its answer, returned
-- in the response) and, with rest_callback_url, stanzas to the component POSTed there as XML
-- (or JSON, with rest_callback_content_type), the answer being the reply. A drop-in for the
-- community module of the same name, on the same native core as mod_component_http; the shared
-- glue is in component_http.lib.lua.

local component_http = module:require "component_http";

local profile = {
	native = "rest"; -- the options rest_*, the XML contract unless rest_callback_content_type says JSON
	url_option = "rest_callback_url";
	push_path = "rest";
	push_accepts_json = true; -- the JSON mapping of component_http's replies, or a stanza as XML
	push_answers_json = false;
	push_negotiates = true; -- answered in JSON when the request is JSON or its Accept asks, else XML
	answer_presence = false;
};

local native = component_http.load_native();
local options, push, rooms = component_http.read_options(native, profile);
component_http.start_rooms(rooms);

-- Without a callback URL the module only sends: stanzas to it are left to Prosody, which answers
-- them as it answers stanzas nobody handles. (The client first: a module that fails to load
-- leaves behind what it registered.)
local client; -- none without a callback URL: nothing is answered, so nothing streams
if options.rest_callback_url ~= nil then
	client = component_http.start_client(native, profile, options);
	component_http.report_metrics(native, client);
elseif not push.credentials then
	module:log("warn", "Neither rest_callback_url nor %s is set: this component does nothing", push.names.credentials);
	return;
end

if push.credentials then
	component_http.serve_push(native, profile, push, client);
end
