-- Statistics. The native side counts as it settles stanzas, off this thread; the figures are
-- handed to Prosody's statistics (mod_http_openmetrics and the other backends) only when Prosody
-- collects them. What was added to each counter so far (`reported`) is handed over on reload
-- together with the client, whose totals go on.

-- Observations replayed into Prosody's latency histogram per go: its public API takes one at a
-- time (about 1.4 µs each), so a large backlog is spread over main loop turns.
local replay_budget = 5000;

local traceback = debug.traceback;

-- The metric families, under the module's name.
local function families(bounds)
	-- A copy of the native bounds: Prosody appends its +Inf bucket to the table it is given.
	local given = {};
	for i, bound in ipairs(bounds) do
		given[i] = bound;
	end
	return {
		posted = module:metric("counter", "posted", "", "Stanzas handed to the module, by kind", { "kind" });
		outcomes = module:metric("counter", "outcomes", "",
			"Stanza outcomes: reply, no_reply, or the condition of the error sent to the sender", { "outcome" });
		responses = module:metric("counter", "responses", "",
			"Webhook HTTP answers by status class; none: no valid answer", { "class" });
		retries = module:metric("counter", "retries", "", "Attempts after a stanza's first", {});
		latency = module:metric("histogram", "request_latency", "seconds",
			"Time from posting a stanza to the webhook's answer read, per attempt", {},
			{ buckets = given });
		queued = module:metric("gauge", "queued", "",
			"Stanzas waiting for a worker, held during an outage, or behind their sender's previous one", {});
		in_flight = module:metric("gauge", "in_flight", "", "Requests in flight", {});
		workers = module:metric("gauge", "workers", "", "Worker threads", {});
		endpoint_up = module:metric("gauge", "endpoint_up", "", "1 while the webhook answers, 0 during an outage", {});
	};
end

-- Adds to a counter what its native total grew by since `reported` last saw it.
local function add_total(reported, family, name, label, total)
	local key = label and name.."/"..label or name;
	local delta = total - (reported[key] or 0);
	if delta > 0 then
		local m = label and family:with_labels(label) or family:with_labels();
		m:add(delta);
		reported[key] = total;
	end
end

-- The native side keeps the histogram's bucket counts and sum; what came since the last replay
-- (`reported.latency_buckets`, `reported.latency_sum`) is replayed through Prosody's public API.
-- The native library decides the values (one per bucket, so that the histogram's sum comes out
-- as the native one) and how many of each, at most replay_budget at a time. Returns true if
-- some are left for later.
local function replay_latency(native, bounds, reported, histogram, s)
	if not s.latency_buckets then
		return false; -- closed
	end
	local replay = native.latency_replay(bounds, s.latency_buckets, s.latency_sum, reported.latency_buckets,
		reported.latency_sum, replay_budget);
	if not replay then
		return false;
	end
	local m = histogram:with_labels();
	for i, value in ipairs(replay.values) do
		for _ = 1, replay.counts[i] do
			m:sample(value);
		end
	end
	reported.latency_buckets, reported.latency_sum = replay.seen, replay.seen_sum;
	return replay.left;
end

-- Reports the client's figures whenever Prosody collects statistics.
local function report(shim, native, client)
	local bounds = native.latency_buckets;
	local metrics = families(bounds);
	local reported = {};
	shim.registries.on_save(function (saved)
		saved.component_http_reported = reported;
	end);
	shim.registries.on_restore(function (saved)
		if saved.component_http_client and saved.component_http_reported then
			reported = saved.component_http_reported;
		end
	end);

	local replay_pending = false;
	local function replay_rest()
		local ok, left = xpcall(replay_latency, traceback, native, bounds, reported, metrics.latency, client:stats());
		if not ok then
			module:log("error", "Failed to report the latency histogram: %s", left);
			left = false;
		end
		replay_pending = left and true or false;
		return left and 0.01 or nil; -- a number: run again after that many seconds, other work in between
	end

	module:hook_global("stats-update", function ()
		local s = client:stats();
		if not s.posted then
			return; -- closed
		end
		for family, by_label in pairs({ posted = s.posted, outcomes = s.outcomes, responses = s.responses }) do
			for label, total in pairs(by_label) do
				add_total(reported, metrics[family], family, label, total);
			end
		end
		add_total(reported, metrics.retries, "retries", nil, s.retries);
		if not replay_pending and replay_latency(native, bounds, reported, metrics.latency, s) then
			replay_pending = true;
			module:add_timer(0, replay_rest);
		end
		metrics.queued:with_labels():set(s.queued);
		metrics.in_flight:with_labels():set(s.in_flight);
		metrics.workers:with_labels():set(s.workers);
		metrics.endpoint_up:with_labels():set(s.endpoint_up and 1 or 0);
	end);
end

return {
	report = report;
};
