-- mod_rest's own part (the rest it shares with mod_component_http): where it loads, and who may
-- POST /rest and as whom. As a Component its callback gets the stanzas to the bot's JIDs; on a
-- VirtualHost only those to the host itself that nothing else handles, so the users' own chats,
-- rosters and presence stay theirs. A client authenticates with rest_credentials (a
-- Component's), Basic (an account's password on a VirtualHost, the component's secret on a
-- Component) or Bearer (a token Prosody issued, checked by mod_tokenauth), and sends as the
-- account it authenticated as. The options' names and checks are the native side's.

local encodings = require "util.encodings";
local jid = require "util.jid";
local new_id = require "util.id".medium;

local base64, stringprep = encodings.base64, encodings.stringprep;

-- Basic: on a Component, "<component JID>:<component_secret>"; on a VirtualHost, an account's
-- "user:password" (or "user@host:password"). Returns the JID it sends as, or nil.
local function basic(auth, data)
	local decoded = base64.decode(data);
	local user, password = (decoded or ""):match("^([^:]+):(.*)$");
	if not user then
		return nil;
	end
	if auth.on_component then
		local secret = auth.component_secret;
		if secret and jid.prep(user) == module.host and auth.native.same_secret(password, secret) then
			return module.host;
		end
		return nil;
	end
	local node, host = user, module.host;
	if user:find("@", 1, true) then
		node, host = jid.split(user);
		host = host and jid.prep(host);
	end
	node, password = node and stringprep.nodeprep(node), stringprep.saslprep(password);
	if not (node and password and host == module.host) then
		return nil;
	end
	-- Required here, not at load: Prosody's user manager needs a running Prosody.
	local usermanager = require "core.usermanager";
	-- 0.12's internal_plain raises on the password of an account that does not exist.
	if not usermanager.user_exists(node, module.host) then
		return nil;
	end
	local ok, valid = pcall(usermanager.test_password, node, module.host, password);
	if not ok then
		module:log("error", "The authentication provider failed to check a password: %s", valid);
	elseif valid then
		return node.."@"..module.host;
	end
	return nil;
end

-- Bearer: a token Prosody issued for an account of this host (or for the component), checked by
-- mod_tokenauth: get_token_session on Prosody 13, get_token_info on 0.12. Returns the JID it
-- sends as, or nil.
local function bearer(auth, token)
	local tokens = auth.tokens;
	local ok, session = pcall(function ()
		if tokens.get_token_session then
			return tokens.get_token_session(token);
		end
		local info = tokens.get_token_info(token);
		return info and info.session;
	end);
	if not ok then
		module:log("error", "mod_tokenauth failed to check a Bearer token: %s", session);
		return nil;
	end
	if type(session) ~= "table" or session.host ~= module.host then
		return nil;
	end
	return session.username and session.username.."@"..module.host or module.host;
end

-- Who sent `request`: the JID the push is sent as (the component's host, or an account's bare
-- JID), or nil and the status (401 when no credentials came, 403 when they were not accepted)
-- and why.
local function authenticate(auth, request)
	if auth.anonymous then
		-- anonymous_rest: an account of its own for each request, as an anonymous login gets.
		return new_id():lower().."@"..module.host;
	end
	local given = request.headers.authorization;
	-- Prosody turns a bare "Authorization:" into "": no credentials.
	if not given or given == "" then
		return nil, 401, auth.missing;
	end
	if auth.credentials and auth.native.same_secret(given, auth.credentials) then
		return module.host;
	end
	local scheme, data = given:match("^(%S+)%s+(%S+)%s*$");
	local mechanism = scheme and auth.mechanisms[scheme:lower()];
	local sender;
	if mechanism == "Basic" then
		sender = basic(auth, data);
	elseif mechanism == "Bearer" and auth.tokens then
		sender = bearer(auth, data);
	end
	if sender then
		return sender;
	end
	return nil, 403, auth.refused;
end

-- Reads and checks mod_rest's own options (refusing to load on an invalid one), and returns what
-- the module and its push endpoint need of them: `on_component`, `events`, `callback_priority`
-- and `callback_sender` (for the client's hooks and replies), and for the endpoint `authenticate(request)`,
-- `www_authenticate`, `too_large(request)` and `iq_wait(request, default)`.
local function start(shim, native, options, push)
	local on_component = module:get_host_type() == "component";
	local rest, why = native.rest_options(options, on_component, module.host);
	if not rest then
		shim.refuse(why);
	end
	local names = rest.names;
	local auth = {
		native = native, on_component = on_component, credentials = push.credentials,
		component_secret = rest.component_secret, mechanisms = {}, anonymous = rest.anonymous,
	};
	local challenges, realm = {}, ("%q"):format(module.host.."/"..module.name);
	for _, mechanism in ipairs(rest.auth_mechanisms) do
		auth.mechanisms[mechanism:lower()] = mechanism;
		table.insert(challenges, mechanism.." realm="..realm);
	end
	if auth.mechanisms.bearer then
		auth.tokens = module:depends("tokenauth");
	end
	local accepted = table.concat(rest.auth_mechanisms, " or ").." ("..names.auth_mechanisms..")";
	if push.credentials then
		accepted = push.names.credentials.." or "..accepted;
	end
	auth.missing = "Authorization is missing: send "..accepted;
	auth.refused = "The credentials in Authorization were not accepted: send "..accepted;

	return {
		on_component = on_component;
		events = rest.events;
		callback_priority = rest.callback_priority;
		callback_sender = rest.callback_sender;
		www_authenticate = table.concat(challenges, ", ");
		authenticate = function (request)
			return authenticate(auth, request);
		end;
		-- The body is over rest_stanza_size_limit: why, for a 413.
		too_large = function (request)
			local size = #(request.body or "");
			if size > rest.stanza_size_limit then
				return ("the body is %d bytes, over the limit of %d (%s)"):format(size, rest.stanza_size_limit,
					names.stanza_size_limit);
			end
		end;
		-- Seconds the pushed iq of `request` waits, and the name of what set them: its
		-- Prosody-Rest-Timeout header or `default` (rest_iq_timeout), at most rest_iq_max_timeout;
		-- or nil and why the header is refused.
		iq_wait = function (request, default)
			return native.rest_iq_wait(default, rest.iq_max_timeout, request.headers.prosody_rest_timeout);
		end;
	};
end

-- The OPTIONS probe, as the community module makes at start: the callback's answer says, in its
-- Accept header, which format it wants the stanzas in (JSON or XML), whatever
-- rest_callback_content_type says. The stanzas posted before the answer comes are in the
-- configured format. `url`: the probe's address (the callback URL, its placeholders filled).
local function probe(native, client, url, quote, format_option)
	local http = require "net.http";
	-- The template's placeholders, as for a stanza of the host to itself (the community module's).
	local host = require "util.http".urlencode(module.host);
	url = url:gsub("{(%w+)}", { kind = "meta", type = "info", to = host, from = host });
	module:set_status("info", "Not yet connected");
	http.request(url, { method = "OPTIONS" }, function (body, code, response)
		if code == 0 then
			module:set_status("error", "The OPTIONS probe of the callback failed: "..quote(body));
			module:log("error", "Could not reach the callback URL for the OPTIONS probe: %s", quote(body));
			return;
		elseif code ~= 200 then
			module:log("warn", "The callback answered the OPTIONS probe with HTTP %d, not 200: keeping %s", code,
				format_option);
			return;
		end
		module:set_status("info", "Connected");
		local accept = response and response.headers and response.headers.accept;
		if not accept then
			return;
		end
		local format = native.rest_answer_format(nil, accept, true); -- XML or JSON: callbacks speak no other
		if format == "form" or (format == "xml" and not accept:lower():find("application/xmpp+xml", 1, true)) then
			module:log("warn", "The callback's Accept (%s) names neither application/json nor application/xmpp+xml: "
				.."keeping %s", quote(accept), format_option);
			return;
		end
		local ok, changed = pcall(client.set_format, client, format);
		if not ok then
			module:log("error", "Could not switch the callback's format: %s", changed);
		elseif changed then
			module:log("info", "The callback's Accept asks for %s: stanzas are POSTed as such from now on",
				format == "json" and "application/json" or "application/xmpp+xml");
		end
	end);
end

return {
	start = start;
	probe = probe;
};
