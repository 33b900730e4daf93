-- Files a bot sends (a reply's or push's `file`): the native side read the bytes and left a
-- placeholder in the message; here the slot request goes to the server's upload service
-- (XEP-0363) with module:send_iq, as the bot, and its answer goes back to the native side, which
-- PUTs the bytes on a thread of its own and wakes us through its descriptor when it is done.
-- Then the message goes out (its body the file's URL), its caption, and the messages that came
-- for the same conversation meanwhile. Nothing here waits.
--
-- The service is the configured one, or the first item of the component's parent host (as
-- clients find it) whose disco#info offers urn:xmpp:http:upload:0; looked up once, at load.

local st = require "util.stanza";
local server = require "net.server";
local new_id = require "util.id".medium;

local traceback = debug.traceback;
local UPLOAD = "urn:xmpp:http:upload:0";

-- Sends one stanza under its own guard: one Prosody cannot route must not cost the others.
local function route(quote, stanza)
	local ok, err = pcall(module.send, module, stanza);
	if not ok then
		module:log("error", "Prosody failed to route the bot's file message (to=%s): %s", quote(stanza.attr.to), err);
	end
end

-- Asks `jid` what it is; `found(info)` with its disco#info answer, nothing when it has none.
local function disco_info(jid, found)
	local iq = st.iq({ type = "get", to = jid, from = module.host, id = new_id() })
		:tag("query", { xmlns = "http://jabber.org/protocol/disco#info" });
	return module:send_iq(iq, nil, 30):next(function (result) return found(result.stanza); end,
		function () return nil; end);
end

-- Finds the upload service (or checks the configured one), once; logs what it found.
local function discover(uploads, quote)
	local configured = uploads:service();
	local function offered(jid)
		return function (info)
			if uploads:offer(jid, info) then
				return jid;
			end
		end;
	end
	if configured then
		disco_info(configured, offered(configured)):next(function (found)
			if found then
				module:log("info", "Files the bot sends go to the upload service %s (at most %d bytes)", found, uploads:limit());
			else
				module:log("warn", "The upload service %s did not say it offers %s (disco#info); files are "
					.."sent to it all the same, at most %d bytes each", quote(configured), UPLOAD, uploads:limit());
			end
		end);
		return;
	end
	local parent = module.host:match("^[^.]+%.(.+)$");
	local where = (parent and prosody.hosts[parent]) and parent or module.host;
	-- Only a host that answers service discovery is asked: on one without mod_disco the query
	-- would go unanswered, or (mod_rest on a VirtualHost) to the callback, as if someone asked.
	local modules = prosody.hosts[where] and prosody.hosts[where].modules;
	if not (modules and modules.disco) then
		module:log("info", "Looked for an upload service on %s, which does not load mod_disco: %s", where,
			uploads:no_service());
		return;
	end
	local items = st.iq({ type = "get", to = where, from = module.host, id = new_id() })
		:tag("query", { xmlns = "http://jabber.org/protocol/disco#items" });
	module:send_iq(items, nil, 30):next(function (result)
		local candidates = { where };
		local query = result.stanza:get_child("query", "http://jabber.org/protocol/disco#items");
		for item in (query and query:childtags("item") or function () end) do
			-- Not the component itself: it is no upload service, and its webhook would get the query.
			if item.attr.jid and not item.attr.node and item.attr.jid ~= module.host then
				table.insert(candidates, item.attr.jid);
			end
		end
		return candidates;
	end, function () return { where }; end):next(function (candidates)
		-- Asked one after the other, so the first that offers uploads is the one used.
		local function try(i)
			local jid = candidates[i];
			if not jid then
				module:log("info", "Looked for an upload service on %s and its disco#items: %s", where, uploads:no_service());
				return;
			end
			return disco_info(jid, offered(jid)):next(function (found)
				if found then
					module:log("info", "Files the bot sends go to the upload service %s (at most %d bytes)", found,
						uploads:limit());
					return;
				end
				return try(i + 1);
			end);
		end
		return try(1);
	end);
end

-- One module's uploads: the native uploads object, what to call when each ends (a push's
-- answer), and the descriptor watch, started with the first file.
local Uploads = {};
Uploads.__index = Uploads;

-- An upload ended: its log line, its messages, the push's answer, then what waited behind it,
-- which goes as any other stanza: behind another file, or at once.
function Uploads:ended(upload)
	local quote = self.quote;
	if upload.log then
		module:log(upload.level, "%s", upload.log);
	end
	for _, stanza in ipairs(upload.stanzas) do
		route(quote, stanza);
	end
	local on_done = self.waiting[upload.id];
	self.waiting[upload.id] = nil;
	if on_done then
		local ok, err = xpcall(on_done, traceback, upload);
		if not ok then
			module:log("error", "Could not answer the push of a file: %s", err);
		end
	end
	for _, stanza in ipairs(upload.held) do
		local ok, err = pcall(self.deliver, self, stanza);
		if not ok then
			module:log("error", "Could not send a message that waited for a file (to=%s): %s", quote(stanza.attr.to), err);
		end
	end
end

-- The native side woke us: every upload that ended since.
function Uploads:on_wakeup()
	local ok, err = xpcall(function ()
		for _, upload in ipairs(self.native:drain()) do
			self:ended(upload);
		end
	end, traceback);
	if not ok then
		module:log("error", "Failed to send the bot's files: %s", err);
	end
end

-- The descriptor is watched from the first file on: a module that sends none watches nothing.
function Uploads:watch()
	if not self.watcher then
		self.watcher = server.watchfd(self.native:fd(), function () self:on_wakeup(); end);
	end
end

-- The slot request of upload `id`, sent as `iq`; its answer (or failure) goes to the native side.
function Uploads:request_slot(id, iq, seconds)
	local uploads = self.native;
	iq.attr.id = new_id();
	module:send_iq(iq, nil, seconds):next(function (result)
		uploads:slot(id, result.stanza);
	end, function (err)
		local answer = type(err) == "table" and err.context and err.context.stanza;
		if answer then
			uploads:slot(id, answer); -- the service's refusal, said by the native side
		elseif type(err) == "table" and err.condition == "remote-server-timeout" then
			uploads:fail(id, 504, ("the upload service %s did not answer the slot request in time"):format(iq.attr.to));
		else
			uploads:fail(id, 502, "Prosody could not send the slot request: "..tostring(err));
		end
	end);
end

-- Uploads the file of `stanza`, if it carries one: false when it carries none (send it
-- yourself); true when the upload began (`on_done(upload)` is called when it ends, after its
-- message is sent); nil, status, why when it is refused at once (the sender's error sent,
-- unless it is a push).
function Uploads:send(stanza, push, on_done)
	local id, iq, seconds, error_stanza = self.native:begin(stanza, push);
	if id == false then
		return false;
	elseif not id then
		local status, refused = iq, seconds;
		if not push then
			module:log("warn", "The bot's file to %s was not sent: %s", self.quote(stanza.attr.to), refused);
			if error_stanza then
				route(self.quote, error_stanza);
			end
		end
		return nil, status, refused;
	end
	self:watch();
	self.waiting[id] = on_done;
	self:request_slot(id, iq, seconds);
	return true;
end

-- Takes a stanza of the webhook's answers if it is the uploads' to send: a message held
-- behind a file still uploading to the same conversation, or one carrying a file. False for
-- any other stanza: the caller sends it.
function Uploads:take(stanza)
	if stanza.name ~= "message" then
		return false;
	end
	if self.native:hold(stanza) then
		module:log("debug", "Holding a message to %s until the file before it is sent", self.quote(stanza.attr.to));
		return true;
	end
	return self:send(stanza, false) ~= false;
end

-- A stanza of the webhook's answers: the uploads' to send, or routed at once.
function Uploads:deliver(stanza)
	if not self:take(stanza) then
		route(self.quote, stanza);
	end
end

-- Unloaded: the watch ends, and every upload still going ends with its error.
function Uploads:close()
	if self.watcher then
		self.watcher:close();
	end
	for _, upload in ipairs(self.native:close()) do
		self:ended(upload);
	end
end

-- Starts the uploads of the module; returns `send(stanza, push, on_done)` (a push's file) and
-- `deliver(stanza)` (a stanza of the webhook's answers, true when the uploads send it).
local function start(shim, native, profile, options)
	local uploads, why = native.uploads(options, profile.native, module.host, st.stanza_mt);
	if not uploads then
		shim.refuse(why);
	end
	local self = setmetatable({ native = uploads, quote = shim.quote, waiting = {} }, Uploads);
	shim.registries.on_unload(function () self:close(); end);
	-- Once the main loop runs: every host is loaded by then, the upload service's too.
	module:add_timer(0, function ()
		discover(uploads, shim.quote);
	end);
	return {
		send = function (stanza, push, on_done) return self:send(stanza, push, on_done); end;
		deliver = function (stanza) return self:take(stanza); end;
	};
end

return { start = start };
