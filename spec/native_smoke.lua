-- The native library on a Lua without a Prosody to run the busted specs against (5.1, LuaJIT):
-- it loads, converts a stanza both ways, and starts and stops a client.
-- Usage: lua spec/native_smoke.lua <directory of component_http_native.so>
package.cpath = assert(arg[1], "the library's directory").."/?.so;"..package.cpath;
local native = require "component_http_native";
local stanza_mt = {};
stanza_mt.__index = stanza_mt;
local xml = "<message type='chat' to='echo@bot.localhost'><body>hi &amp; bye</body></message>";
local stanza = assert(native.parse(xml, stanza_mt));
assert(getmetatable(stanza) == stanza_mt and stanza.name == "message" and stanza.attr.to == "echo@bot.localhost");
assert(stanza[1].name == "body" and stanza[1][1] == "hi & bye");
assert(native.serialize(stanza):find("<body>hi &amp; bye</body>", 1, true));
local client = assert(native.new({ component_post_url = "http://127.0.0.1:9/" }, stanza_mt, "component_http", "bot.localhost"));
assert(type(client:fd()) == "number");
client:close();
assert(not native.new({ component_post_url = "ftp://x/" }, stanza_mt, "component_http", "bot.localhost"));
print("ok: the native library on "..(jit and jit.version or _VERSION));
