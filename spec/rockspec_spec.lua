-- What can be checked of the rockspecs without a rocks server: that they agree with the crate
-- and with each other, and name files that exist. (`luarocks lint` runs in scripts/test too.)
local function load_rockspec(path)
	local spec = {};
	assert(loadfile(path, "t", spec))();
	return spec;
end

local function exists(path)
	local file = io.open(path, "rb");
	if file then file:close(); end
	return file ~= nil;
end

describe("the rockspecs", function ()
	local cargo = assert(io.open("Cargo.toml")):read("*a");
	local local_spec = load_rockspec("rockspec/mod_component_http-0.1.0-1.rockspec");
	local public_spec = load_rockspec("rockspec/luarocks.org/mod_component_http-0.1.0-1.rockspec");

	it("carry the crate's version and library name", function ()
		local crate_version = cargo:match('\nversion = "([^"]+)"');
		for _, spec in ipairs({ local_spec, public_spec }) do
			assert.are.equal(crate_version.."-1", spec.version);
		end
		assert.truthy(cargo:find('name = "component_http_native"', 1, true));
		assert.are.same({ "component_http_native" }, public_spec.build.modules);
		assert.are.equal("rust-mlua", public_spec.build.type);
		assert.is_false(public_spec.build.default_features);
		assert.are.same({ "module" }, public_spec.build.features);
	end);

	it("install the same Lua files, which exist", function ()
		local from_local = {};
		for name, file in pairs(local_spec.build.install.lua) do
			assert.is_true(exists(file), file);
			-- A module name is installed as name.lua; a listed file under its own name.
			from_local[file] = type(name) == "string" and name..".lua" or file:match("[^/]+$");
		end
		assert.are.same(from_local, public_spec.build.include);
		assert.are.equal("component_http.lib.lua", from_local["lua/component_http.lib.lua"]);
		for file in io.popen("ls lua"):lines() do
			assert.truthy(from_local["lua/"..file], "lua/"..file.." is installed");
		end
	end);
end);
