-- Shared set-up for the specs: Prosody's own libraries from Debian's package, and the native
-- library from this checkout's cargo build (see the README's test command).
local prosody_libs = os.getenv("PROSODY_LIBS") or "/usr/lib/prosody";
local native_dir = os.getenv("NATIVE_DIR") or "target/test-tree/lib/lua/5.4";
-- Prosody 13 names its libraries prosody.util.*, found from the directory above.
package.path = prosody_libs.."/?.lua;"..prosody_libs.."/../?.lua;"..package.path;
package.cpath = native_dir.."/?.so;"..prosody_libs.."/?.so;"..prosody_libs.."/../?.so;"..package.cpath;

local helpers = {};

-- A fake Prosody module API, recording what the shim does with it.
function helpers.fake_module(options, host)
	host = host or "bot.localhost";
	local fake = {
		host = host,
		path = "lua/mod_component_http.lua",
		options = options or {},
		hooks = {},
		global_hooks = {},
		sent = {},
		logs = {},
		-- Prosody's own statistics registry (the "internal" provider's), as the real
		-- module:metric would use it.
		statistics = require "util.statistics".new(),
	};
	-- A Component's, unless a spec sets `host_type` ("local": a VirtualHost).
	function fake:get_host_type() return self.host_type or "component"; end
	function fake:get_option(name) return self.options[name]; end
	function fake:get_option_string(name) return self.options[name]; end
	function fake:get_option_number(name, default) return self.options[name] or default; end
	-- `hooks` keeps the last handler per event; `all_hooks` every one, in the order hooked.
	fake.all_hooks = {};
	function fake:hook(event, handler, priority)
		self.hooks[event] = { handler = handler, priority = priority };
		self.all_hooks[event] = self.all_hooks[event] or {};
		table.insert(self.all_hooks[event], { handler = handler, priority = priority });
	end
	-- module:add_timer: recorded, run by the spec.
	fake.timers = {};
	function fake:add_timer(delay, callback)
		table.insert(self.timers, { delay = delay, callback = callback });
	end
	-- module:open_store: one keyval store in memory (`fake.stored`, by user).
	fake.stored = {};
	function fake:open_store()
		local stored = self.stored;
		return {
			get = function (_, user) return stored[user or "@host"]; end,
			set = function (_, user, data) stored[user or "@host"] = data; return true; end,
		};
	end
	function fake:log(level, fmt, ...)
		table.insert(self.logs, { level = level, message = fmt:format(...) });
	end
	-- module:fire_event and module:unhook: nothing handles an event here.
	fake.fire_event = function () end;
	fake.unhook = function () end;
	function fake:hook_global(event, handler)
		self.global_hooks[event] = handler;
	end
	function fake:set_status(status_type, message)
		self.status_type, self.status_message = status_type, message;
	end
	function fake:metric(type_, name, unit, description, labels, extra)
		assert(type(labels) == "table", "module:metric wants a table of label keys (Prosody appends them)");
		local label_keys = { "host" };
		for _, label in ipairs(labels or {}) do table.insert(label_keys, label); end
		local registry = self.statistics.metric_registry;
		local family = registry[type_](registry, "prosody_mod_component_http/"..name, unit or "", description or "",
			label_keys, extra);
		return family:with_partial_label(self.host);
	end
	function fake:depends(name) self.dependencies = (self.dependencies or "")..name.." "; end
	function fake:provides(kind, item) self.provided = self.provided or {}; self.provided[kind] = item; end
	function fake:send(stanza)
		if self.send_error and (self.send_error_id == nil or self.send_error_id == stanza.attr.id) then
			error(self.send_error);
		end
		table.insert(self.sent, stanza);
	end
	-- module:send_iq: records the iq with its promise's resolve and reject, settled by the spec.
	fake.iqs = {};
	function fake:send_iq(stanza, origin, timeout)
		return require "util.promise".new(function (resolve, reject)
			table.insert(self.iqs, { stanza = stanza, origin = origin, timeout = timeout, resolve = resolve, reject = reject });
			self:send(stanza);
		end);
	end
	return fake;
end

-- Loads the shim the way Prosody does: in an environment whose `module` is the fake.
-- Returns the fake module, the fake host's event handlers and the recorded watchfd.
-- `name`: the module, "component_http" (the default) or "rest".
function helpers.load_shim(options, awaited_events, name)
	name = name or "component_http";
	local fake = helpers.fake_module(options, name == "rest" and "rest.localhost" or nil);
	fake.name, fake.path = name, "lua/mod_"..name..".lua";
	local watch = { tasks = {} };
	package.loaded["util.timer"] = {
		add_task = function (delay, callback)
			table.insert(watch.tasks, { delay = delay, callback = callback });
		end,
	};
	package.loaded["net.server"] = {
		watchfd = function (fd, onreadable)
			watch.fd, watch.onreadable = fd, onreadable;
			watch.closed = false;
			return { close = function () watch.closed = true; end };
		end,
	};
	local events = {
		get_handlers = function (event_name)
			if awaited_events and awaited_events[event_name] then return { function () end }; end
		end,
	};
	local env = setmetatable({
		module = fake,
		prosody = { hosts = { [fake.host] = { events = events } } },
	}, { __index = _G });
	-- module:require, as Prosody's: name.lib.lua (or name.lua) beside the module, run in the
	-- module's environment.
	function fake.require(_, lib)
		local chunk = loadfile("lua/"..lib..".lib.lua", "t", env) or loadfile("lua/"..lib..".lua", "t", env);
		return assert(chunk, "no lua/"..lib..".lib.lua")();
	end
	local chunk = assert(loadfile(fake.path, "t", env));
	local ok, err = pcall(chunk);
	return fake, watch, ok, err;
end

-- Calls the watchfd callback until `count` stanzas were sent or `seconds` passed.
-- The `load(options, awaited_events, name)` of a spec file: `load_shim` whose modules are all
-- unloaded after each test, so no client, watch or timer outlives its test. Call at the top of
-- the file with busted's `after_each` (a global of spec files only).
function helpers.loader(after_each, default_name)
	local loaded = {};
	after_each(function ()
		for _, fake in ipairs(loaded) do
			if fake.unload then fake.unload(); end
		end
		loaded = {};
	end);
	return function (options, awaited_events, name)
		local fake, watch, ok, err = helpers.load_shim(options, awaited_events, name or default_name);
		if ok then table.insert(loaded, fake); end
		return fake, watch, ok, err;
	end;
end

function helpers.wait_sent(fake, watch, count, seconds)
	local socket = require "socket";
	local deadline = socket.gettime() + (seconds or 5);
	while #fake.sent < count and socket.gettime() < deadline do
		watch.onreadable();
		socket.sleep(0.01);
	end
	return fake.sent;
end

-- A webhook that accepts connections and never answers: keeps a stanza pending.
-- Returns the listening LuaSocket server and its URL.
function helpers.silent_webhook()
	local socket = require "socket";
	local server = assert(socket.bind("127.0.0.1", 0));
	local _, port = server:getsockname();
	return server, "http://127.0.0.1:"..port.."/";
end

-- A TCP port on loopback that nobody listens on.
function helpers.closed_port()
	local socket = require "socket";
	local server = assert(socket.bind("127.0.0.1", 0));
	local _, port = server:getsockname();
	server:close();
	return port;
end

-- Serialization with attributes sorted: two trees are equal whatever order their attribute
-- tables happen to iterate in. Line ends are compared as a parser reads them: Prosody's
-- serializer writes a carriage return in text, and tab, line feed or carriage return in an
-- attribute, as they are, and any XML parser reads them back as a line feed and spaces.
function helpers.canonical(node)
	local escape = require "util.stanza".xml_escape;
	if type(node) == "string" then return escape((node:gsub("\r\n?", "\n"))); end
	local keys = {};
	for k, v in pairs(node.attr) do
		-- `xmlns=''` under a namespaced parent is kept by the native parser so that it
		-- survives serialization; util.xml leaves the attribute out. The same tree.
		if not (k == "xmlns" and v == "") then table.insert(keys, k); end
	end
	table.sort(keys);
	local out = { "<", node.name };
	for _, k in ipairs(keys) do
		table.insert(out, (" %s='%s'"):format(k, escape((node.attr[k]:gsub("\r\n?", "\n"):gsub("[\t\n]", " ")))));
	end
	table.insert(out, ">");
	for _, child in ipairs(node) do table.insert(out, helpers.canonical(child)); end
	table.insert(out, "</"..node.name..">");
	return table.concat(out);
end

return helpers;
