-- mod_rest: stanzas in over HTTP (POST /rest, XML; an iq waits for its answer, returned in the
-- response) and, with rest_callback_url, stanzas to the component POSTed there as XML, the
-- answer being the reply. A drop-in for the community module of the same name, on the same
-- native core as mod_component_http; the shared glue is in component_http_shared.lua.

module:require("component_http_shared")({
	native = "rest"; -- the options rest_*, the XML contract
	url_option = "rest_callback_url";
	url_optional = true; -- without a callback, the module only sends
	push_path = "rest";
	push_accepts_json = false;
	push_answers_json = false;
	answer_presence = false;
});
