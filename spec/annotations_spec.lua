-- The LuaCATS annotations (---@param, ---@return) that lua-language-server users
-- rely on stay in step with the code: every public function of the library has
-- them, for exactly the parameters it takes.
local FILES = { "client", "http", "follow", "render", "errors", "init", "loop", "ngx", "heap", "uv", "nvim",
                "estimate", "preflight", "journal", "batch", "cli_batch" }

local function public_functions(path)
  local f = assert(io.open(path))
  local out, block = {}, {}
  local n = 0
  for line in f:lines() do
    n = n + 1
    if line:match("^%s*%-%-%-") then
      block[#block + 1] = line
    else
      local owner, name, params = line:match("^function%s+([%w_]+)[:.]([%w_]+)%s*%(([^)]*)%)")
      if not owner then
        owner, name, params = line:match("^%s*([%w_]+)%.([%w_]+)%s*=%s*function%s*%(([^)]*)%)")
      end
      if owner and name:sub(1, 1) ~= "_" and (owner == "_M" or owner:match("^%u")) then
        local list = {}
        for p in params:gmatch("[%w_%.]+") do list[#list + 1] = p end
        out[#out + 1] = { name = owner .. "." .. name, line = n, params = list, doc = block }
      end
      block = {}
    end
  end
  f:close()
  return out
end

describe("LuaCATS annotations", function()
  for _, file in ipairs(FILES) do
    local path = "lua/viggle/" .. file .. ".lua"
    describe(path, function()
      local fns = public_functions(path)
      it("has public functions", function() assert.is_true(#fns > 0) end)
      for _, fn in ipairs(fns) do
        it(fn.name .. " (line " .. fn.line .. ")", function()
          local documented, returns = {}, false
          for _, l in ipairs(fn.doc) do
            local p = l:match("^%s*%-%-%-@param%s+([%w_%.]+)")
            if p then documented[p] = true end
            if l:match("^%s*%-%-%-@return") then returns = true end
          end
          assert.is_true(#fn.doc > 0, "no doc comment")
          for _, p in ipairs(fn.params) do
            assert.is_true(documented[p] == true, "parameter '" .. p .. "' has no ---@param")
            documented[p] = nil
          end
          assert.is_nil(next(documented), "---@param for a parameter that does not exist: "
            .. tostring(next(documented)))
          assert.is_true(returns, "no ---@return")
        end)
      end
    end)
  end
end)
