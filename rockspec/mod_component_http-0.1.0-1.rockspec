-- Build and install with:  luarocks --lua-version 5.4 make rockspec/mod_component_http-0.1.0-1.rockspec
-- (add --tree <installer_plugin_path> to install where Prosody's `prosodyctl install` does).
-- The native part is built with the local cargo; nothing is fetched from a rocks server.
rockspec_format = "3.0"
package = "mod_component_http"
version = "0.1.0-1"
source = {
	url = "git+file:///dev/null", -- built from a checkout with `luarocks make`
}
description = {
	summary = "Prosody components that bridge stanzas and HTTP (drop-in mod_component_http and mod_rest)",
	detailed = [[
A drop-in replacement for Prosody's community mod_component_http: every stanza sent to the
component is POSTed as JSON to component_post_url, and the webhook's JSON answer becomes the
reply. HTTP runs on native worker threads with keep-alive and timeouts.
]],
	license = "MIT",
	labels = { "prosody", "xmpp", "webhook" },
}
dependencies = {
	"lua >= 5.1",
}
build = {
	type = "command",
	-- Picks the cargo feature matching the Lua that LuaRocks builds for (lua51…lua54, luajit),
	-- and copies the library to the name Lua's loader expects.
	build_command = [[cargo build --release --locked --no-default-features --features "module `"$(LUA)" -e 'print(jit and "luajit" or "lua".._VERSION:match("%d+%.%d+"):gsub("%.", ""))'`" && cp target/release/libcomponent_http_native.so target/component_http_native.so]],
	install = {
		lua = {
			mod_component_http = "lua/mod_component_http.lua",
			mod_rest = "lua/mod_rest.lua",
			-- What both share, installed beside them under their own names (a listed file keeps
			-- it), where Prosody's module:require "component_http" (and "component_http_push"...)
			-- finds them.
			"lua/component_http.lib.lua",
			"lua/component_http_client.lib.lua",
			"lua/component_http_identity.lib.lua",
			"lua/component_http_metrics.lib.lua",
			"lua/component_http_push.lib.lua",
			"lua/component_http_push_iq.lib.lua",
			"lua/component_http_answers.lib.lua",
			"lua/component_http_rooms.lib.lua",
			"lua/component_http_upload.lib.lua",
			"lua/component_http_rest.lib.lua",
			"lua/component_http_rest_sending.lib.lua",
		},
		lib = {
			component_http_native = "target/component_http_native.so",
		},
	},
}
