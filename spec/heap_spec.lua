-- viggle.heap, the min-heap under the scheduler's timers and await_all's due
-- polls: property tests over random sequences of pushes and pops, checked
-- against a sorted list.
local heap = require("viggle.heap")

-- a seeded generator of our own (math.random differs between Lua versions)
local function rng(seed)
  local s = seed
  return function(n)
    s = (s * 1103515245 + 12345) % 2147483648
    return s % n
  end
end

local function sorted_insert(list, key)
  local i = #list + 1
  while i > 1 and list[i - 1] > key do i = i - 1 end
  table.insert(list, i, key)
end

describe("viggle.heap", function()
  it("is empty when new: peek and pop give nil", function()
    local h = heap.new()
    assert.are.equal(0, h.n)
    assert.is_nil(h:peek())
    assert.is_nil(h:pop())
  end)

  it("pops every pushed entry in key order, for random sequences of 1 to 64 keys", function()
    for seed = 1, 200 do
      local r = rng(seed)
      local h, keys = heap.new(), {}
      for _ = 1, 1 + r(64) do
        local k = r(50) / 4 -- repeats and fractions, like timer deadlines
        h:push({ k })
        keys[#keys + 1] = k
      end
      table.sort(keys)
      local out = {}
      while h.n > 0 do out[#out + 1] = h:pop()[1] end
      assert.are.same(keys, out, "seed " .. seed)
    end
  end)

  it("keeps the smallest on top through interleaved pushes and pops", function()
    for seed = 1, 200 do
      local r = rng(seed * 7919)
      local h, model = heap.new(), {}
      for step = 1, 120 do
        if #model > 0 and r(3) == 0 then
          local want = table.remove(model, 1)
          local e = h:pop()
          assert.are.equal(want, e[1], "seed " .. seed .. " step " .. step)
        else
          local k = r(1000)
          h:push({ k, "payload" .. k })
          sorted_insert(model, k)
        end
        assert.are.equal(#model, h.n)
        if #model > 0 then assert.are.equal(model[1], h:peek()[1], "seed " .. seed .. " step " .. step) end
      end
    end
  end)

  it("returns the entries themselves, with what they carry", function()
    local h = heap.new()
    local a, b, c = { 3, "c" }, { 1, "a" }, { 2, "b" }
    h:push(a) h:push(b) h:push(c)
    assert.are.equal(b, h:pop())
    assert.are.equal(c, h:pop())
    assert.are.equal(a, h:pop())
    assert.is_nil(h:pop())
  end)

  it("takes a lone left child and the smaller of two children", function()
    -- shapes where a pop ends with one child left, and where the right child is smaller
    for n = 2, 9 do
      for first = 1, n do
        local h = heap.new()
        local keys = {}
        for k = 1, n do keys[#keys + 1] = (k + first) % n end
        for _, k in ipairs(keys) do h:push({ k }) end
        for want = 0, n - 1 do assert.are.equal(want, h:pop()[1], n .. "/" .. first) end
      end
    end
  end)
end)
