-- Pushed iqs (get and set) waiting for their answers: each goes out under an id of ours, its
-- HTTP response waits in `endpoint.iqs` (at most max_push_iqs), and the iq's answer, an error,
-- a timeout or the module's unloading answers it, exactly once.

local st = require "util.stanza";
local new_id = require "util.id".medium;

local answers = module:require "component_http_answers";
local plain, render, render_all = answers.plain, answers.render, answers.render_all;
local sending = module:require "component_http_rest_sending";

-- The response of the pushed iq `key` if it is still waiting, no longer counted as waiting.
local function settle(endpoint, key)
	local response = endpoint.iqs[key];
	if response then
		endpoint.iqs[key], endpoint.iq_count = nil, endpoint.iq_count - 1;
	end
	return response;
end

-- Returns the answer `reply` to the pushed iq `stanza` waiting as `key` under the client's id,
-- after the stanzas `collected` for it (an archive query's results), if any.
local function answer_iq(endpoint, key, client_id, stanza, reply, collected)
	local response = settle(endpoint, key);
	if not response then
		return; -- answered already, on unload
	end
	-- Under the promise's own xpcall an error would be lost, and the client never answered.
	local ok, body = pcall(function ()
		reply = st.clone(reply);
		reply.attr.id = client_id or key;
		local results = {};
		for _, collected_stanza in ipairs(collected or {}) do
			-- The final iq reaches the origin too (module:send_iq passes it on): once is enough.
			if not (collected_stanza.name == "iq" and collected_stanza.attr.id == key) then
				table.insert(results, collected_stanza);
			end
		end
		if #results > 0 then
			table.insert(results, reply);
			return render_all(endpoint, response, results);
		end
		return render(endpoint, response, reply);
	end);
	if not ok then
		module:log("error", "Could not return the answer to a pushed iq (to=%s): %s", endpoint.quote(stanza.attr.to), body);
		body = plain(endpoint, response, 500, "The iq's answer could not be returned: "..tostring(body));
	end
	response:send(body);
end

-- Sends a pushed iq get or set, waiting `timeout` seconds (set by the option or header named
-- `bound_by`) for its answer: the HTTP response's. `origin`: the session it is sent from (an
-- account's, for mod_rest on a VirtualHost), whose `collected` stanzas come before the answer.
local function send(endpoint, stanza, response, timeout, bound_by, origin, sender)
	local push, names = endpoint.push, endpoint.push.names;
	if endpoint.iq_count >= push.max_iqs then
		response.headers.retry_after = "1";
		return plain(endpoint, response, 503, ("%d pushed iqs are already waiting for their answers (%s): retry later")
			:format(push.max_iqs, names.max_iqs));
	end
	-- The iq goes out under an id of ours, so no client can reuse a waiting one (which Prosody's
	-- module:send_iq would refuse, and unhook the first); the answer gets the client's back.
	local client_id, key = stanza.attr.id, new_id();
	stanza.attr.id = key;
	endpoint.iqs[key], endpoint.iq_count = response, endpoint.iq_count + 1;
	local collected = origin and origin.collected or {};
	local stop = endpoint.rest and sending.collect_archive(stanza, sender, collected) or function () end;
	local ok, promise = pcall(module.send_iq, module, stanza, origin, timeout);
	if not ok then
		stop();
		settle(endpoint, key);
		module:log("error", "Prosody failed to send a pushed iq (to=%s): %s", endpoint.quote(stanza.attr.to), tostring(promise));
		return plain(endpoint, response, 500, "Prosody could not send the iq: "..tostring(promise));
	end
	promise:next(function (result)
		stop();
		answer_iq(endpoint, key, client_id, stanza, result.stanza, collected);
	end, function (err)
		stop();
		local reply = type(err) == "table" and err.context and err.context.stanza;
		if reply then
			return answer_iq(endpoint, key, client_id, stanza, reply, collected); -- an error the other side sent
		elseif not settle(endpoint, key) then
			return;
		elseif type(err) == "table" and err.condition == "remote-server-timeout" then
			response:send(plain(endpoint, response, 504, ("No answer to the iq within %g s (%s)")
				:format(timeout, bound_by)));
		else
			module:log("error", "Prosody failed to send a pushed iq (to=%s): %s", endpoint.quote(stanza.attr.to), tostring(err));
			response:send(plain(endpoint, response, 500, "Prosody could not send the iq: "..tostring(err)));
		end
	end);
	return true; -- answered when the iq's answer comes
end

-- Unloaded or reloaded: every pushed iq still waiting is answered 503, saying so.
local function answer_waiting(endpoint)
	local keys = {};
	for key in pairs(endpoint.iqs) do
		table.insert(keys, key);
	end
	if #keys > 0 then
		module:log("info", "Answering %d pushed iqs still waiting with 503: the module is unloading", #keys);
	end
	for _, key in ipairs(keys) do
		local response = settle(endpoint, key);
		response.headers.retry_after = "1";
		response:send(plain(endpoint, response, 503, "The module was unloaded or reloaded before the iq's answer came: retry"));
	end
end

return {
	send = send;
	answer_waiting = answer_waiting;
};
