-- The rockspec for a public rocks server (luarocks.org): the native library is built by
-- luarocks-build-rust-mlua, the usual backend for Lua modules written with mlua, which picks the
-- Cargo feature matching the Lua LuaRocks builds for (lua51 ... lua54, luajit).
--     luarocks --lua-version 5.4 install --tree /var/lib/prosody/custom_plugins mod_component_http
-- (or `prosodyctl install mod_component_http` with a plugin_server serving it).
-- Before uploading: tag the release in the project's public repository named in source.url.
-- The local rockspec beside this one builds the same from a checkout, with no rocks server.
rockspec_format = "3.0"
package = "mod_component_http"
version = "0.1.0-1"
source = {
	url = "git+https://github.com/mod-component-http/mod_component_http.git",
	tag = "v0.1.0",
}
description = {
	summary = "Prosody components that bridge stanzas and HTTP (drop-in mod_component_http and mod_rest)",
	detailed = [[
Drop-in replacements for Prosody's community modules mod_component_http (stanzas POSTed as JSON
to a webhook, its answer the reply) and mod_rest (stanzas in over HTTP, an iq's answer in the
response, XML callbacks), with their HTTP work done by a native library (Rust, mlua).
]],
	homepage = "https://github.com/mod-component-http/mod_component_http",
	license = "MIT",
	labels = { "prosody", "xmpp", "webhook" },
}
dependencies = {
	"lua >= 5.1",
	"luarocks-build-rust-mlua",
}
build = {
	type = "rust-mlua",
	modules = {
		-- target/release/libcomponent_http_native.so, installed as component_http_native
		"component_http_native",
	},
	-- The crate's default features build for Lua 5.4; the backend adds the right luaXX.
	default_features = false,
	features = { "module" },
	include = {
		["lua/mod_component_http.lua"] = "mod_component_http.lua",
		["lua/mod_rest.lua"] = "mod_rest.lua",
		["lua/component_http.lib.lua"] = "component_http.lib.lua",
		["lua/component_http_client.lib.lua"] = "component_http_client.lib.lua",
		["lua/component_http_identity.lib.lua"] = "component_http_identity.lib.lua",
		["lua/component_http_metrics.lib.lua"] = "component_http_metrics.lib.lua",
		["lua/component_http_push.lib.lua"] = "component_http_push.lib.lua",
		["lua/component_http_push_iq.lib.lua"] = "component_http_push_iq.lib.lua",
		["lua/component_http_answers.lib.lua"] = "component_http_answers.lib.lua",
		["lua/component_http_rooms.lib.lua"] = "component_http_rooms.lib.lua",
		["lua/component_http_rest.lib.lua"] = "component_http_rest.lib.lua",
		["lua/component_http_rest_sending.lib.lua"] = "component_http_rest_sending.lib.lua",
		["lua/component_http_upload.lib.lua"] = "component_http_upload.lib.lua",
	},
}
