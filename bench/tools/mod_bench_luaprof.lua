-- mod_bench_luaprof: where Prosody's Lua time goes during a benchmark phase.
-- Benchmark diagnostics only (bench/run --lua-profile); never load it in
-- production.
--
-- A count hook fires every `bench_luaprof_interval` Lua VM instructions and
-- charges the function and the line that are running. It counts VM
-- instructions, not time: work inside C functions (expat, string building,
-- socket writes, the native module) and the garbage collector is not seen
-- here (perf shows that side). Hooks are per coroutine in Lua, so
-- coroutines created after load (Prosody runs each session's stanzas in its
-- own) get the hook too.
--
-- SIGUSR1 clears the counts; SIGUSR2 writes the report to
-- `bench_luaprof_output` (mod_posix turns both signals into events).

module:set_global(); -- once per process, and hooks on the global events mod_posix fires

local interval = module:get_option_number("bench_luaprof_interval", 1000);
local output = module:get_option_string("bench_luaprof_output");
assert(output, "bench_luaprof_output is required");

local getinfo, sethook = debug.getinfo, debug.sethook;
local by_function, by_line, total = {}, {}, 0;
local names = {};

local function sample()
	local info = getinfo(2, "Sl");
	if not info then
		return;
	end
	total = total + 1;
	local fkey = info.short_src .. ":" .. info.linedefined;
	by_function[fkey] = (by_function[fkey] or 0) + 1;
	local lkey = info.short_src .. ":" .. (info.currentline or -1);
	by_line[lkey] = (by_line[lkey] or 0) + 1;
	if names[fkey] == nil then
		local n = getinfo(2, "n");
		names[fkey] = n and n.name or false;
	end
end

-- The hook belongs to one coroutine: set it on the main thread from the main
-- loop (a timer), and on every coroutine created from now on.
local hooked = 0;
module:add_timer(0, function()
	sethook(sample, "", interval);
	local _, is_main = coroutine.running();
	module:log("info", "Lua profiler: count hook every %d instructions (main thread: %s)", interval, tostring(is_main));
end);

local co_create, co_wrap = coroutine.create, coroutine.wrap;
function coroutine.create(f) -- luacheck: ignore 122
	local co = co_create(f);
	sethook(co, sample, "", interval);
	hooked = hooked + 1;
	return co;
end
function coroutine.wrap(f) -- luacheck: ignore 122
	local co = co_create(f);
	sethook(co, sample, "", interval);
	hooked = hooked + 1;
	return function(...)
		local ret = table.pack(coroutine.resume(co, ...));
		if not ret[1] then
			error(ret[2], 0);
		end
		return table.unpack(ret, 2, ret.n);
	end
end

local function top(counts, n)
	local list = {};
	for k, v in pairs(counts) do
		list[#list + 1] = { k, v };
	end
	table.sort(list, function(a, b) return a[2] > b[2]; end);
	local lines = {};
	for i = 1, math.min(n, #list) do
		local k, v = list[i][1], list[i][2];
		local name = names[k];
		lines[#lines + 1] = ("%6.2f%%  %8d  %s%s"):format(100 * v / math.max(total, 1), v, k,
			name and ("  (" .. name .. ")") or "");
	end
	return table.concat(lines, "\n");
end

module:hook("signal/SIGUSR1", function()
	by_function, by_line, total = {}, {}, 0;
end);

module:hook("signal/SIGUSR2", function()
	local f, err = io.open(output, "w");
	if not f then
		module:log("error", "Cannot write %s: %s", output, err);
		return;
	end
	f:write(("Lua VM instruction samples: %d (one per %d instructions); coroutines hooked since load: %d\n\n")
		:format(total, interval, hooked));
	f:write("== by function (self; file:line where defined)\n", top(by_function, 40), "\n\n");
	f:write("== by line\n", top(by_line, 40), "\n");
	f:close();
end);

function module.unload()
	sethook();
	coroutine.create, coroutine.wrap = co_create, co_wrap; -- luacheck: ignore 122
end
