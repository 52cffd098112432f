-- core.decode, the JSON decoder every API answer goes through: a table of
-- vectors for what README.md promises (large integers kept exactly, nulls,
-- whole numbers as integers on Lua 5.3+).
local core = require("viggle.core")
local viggle = require("viggle")

local HAS_INTEGERS = math.type ~= nil

describe("core.decode", function()
  describe("integers beyond a double's 2^53 come back as strings, never rounded", function()
    local vectors = {
      { "9007199254740993", "9007199254740993" },    -- 2^53 + 1: 16 digits
      { "9007199254740999", "9007199254740999" },
      { "12345678901234567", "12345678901234567" },  -- 17 digits
      { "99999999999999999999", "99999999999999999999" },
      { "-9007199254740993", "-9007199254740993" },
      { "-12345678901234567", "-12345678901234567" },
    }
    for _, v in ipairs(vectors) do
      it(v[1], function()
        local t = assert(core.decode('{"id": ' .. v[1] .. ', "list": [' .. v[1] .. ']}'))
        assert.are.equal(v[2], t.id)
        assert.are.equal(v[2], t.list[1])
        assert.are.equal(v[2], core.decode(v[1]))
      end)
    end

    it("is found at every offset of the text, after runs of fewer digits", function()
      -- the scan probes every 16th byte: a number anywhere, after short runs
      -- of digits (dates, counts) in front of it, must still be seen
      for pad = 0, 40 do
        local text = '{"a": "' .. string.rep("7", pad % 15) .. string.rep("x", pad) .. '", "id": 9007199254740993}'
        assert.are.equal("9007199254740993", assert(core.decode(text)).id, text)
      end
    end)

    it("an escaped quote in a string does not hide a large integer after it", function()
      local t = assert(core.decode('["a \\" b", 9007199254740993, "12345678901234567890"]'))
      assert.are.equal('a " b', t[1])
      assert.are.equal("9007199254740993", t[2])
      assert.are.equal("12345678901234567890", t[3])
    end)
  end)

  describe("numbers a double holds stay numbers", function()
    local vectors = {
      { "9007199254740992", 9007199254740992 },      -- 2^53, exact
      { "-9007199254740992", -9007199254740992 },
      { "1234567890123456", 1234567890123456 },      -- 16 digits under 2^53
      { "4503599627370496", 4503599627370496 },
      { "12.5", 12.5 },
      { "-0.25", -0.25 },
      { "12345678901234567.5", 12345678901234567.5 }, -- a fraction: never a string
      { "1e20", 1e20 },
      { "12345678901234567e2", 12345678901234567e2 },
    }
    for _, v in ipairs(vectors) do
      it(v[1], function()
        local t = assert(core.decode('{"v": ' .. v[1] .. ', "a": [' .. v[1] .. ']}'))
        assert.are.equal("number", type(t.v))
        assert.are.equal(v[2], t.v)
        assert.are.equal(v[2], t.a[1])
        assert.are.equal(v[2], core.decode(v[1]))
      end)
    end
  end)

  it("keeps 12.5 a float and makes whole numbers integers on Lua 5.3+", function()
    local t = assert(core.decode('{"half": 12.5, "whole": 5, "dot": 5.0, "pct": {"p": 20.0}, "list": [1, 2.5]}'))
    assert.are.equal(12.5, t.half)
    assert.are.equal(2.5, t.list[2])
    assert.are.equal(12.5, core.decode("12.5"))
    if HAS_INTEGERS then
      assert.are.equal("integer", math.type(t.whole))
      assert.are.equal("integer", math.type(t.dot))
      assert.are.equal("integer", math.type(t.pct.p))
      assert.are.equal("integer", math.type(t.list[1]))
      assert.are.equal("float", math.type(t.half))
      assert.are.equal("integer", math.type(core.decode("7")))
      assert.are.equal("integer", math.type(core.decode("7.0")))
      assert.are.equal("float", math.type(core.decode("7.5")))
      assert.are.equal("5", tostring(t.whole))
    end
  end)

  it("keeps null inside arrays in place, whatever the length operator says", function()
    local t = assert(core.decode("[1, null, 3]"))
    assert.are.equal(1, t[1])
    assert.are.equal(viggle.null, t[2])
    assert.are.equal(core.null, t[2])
    assert.are.equal(3, t[3])
    local n = 0
    for _ in pairs(t) do n = n + 1 end
    assert.are.equal(3, n)
    local nested = assert(core.decode('{"chunks": [null, {"a": null, "b": 2}, null]}'))
    assert.are.equal(viggle.null, nested.chunks[1])
    assert.are.equal(viggle.null, nested.chunks[3])
    assert.is_nil(nested.chunks[2].a)
    assert.are.equal(2, nested.chunks[2].b)
  end)

  it("drops null fields of objects, at any depth", function()
    local t = assert(core.decode('{"a": null, "b": {"c": null, "d": {"e": null, "f": 1}}}'))
    assert.is_nil(t.a)
    assert.is_nil(t.b.c)
    assert.is_nil(t.b.d.e)
    assert.are.equal(1, t.b.d.f)
    assert.is_nil(next(t, next(t)))  -- only b is left
    assert.are.equal("b", next(t))
  end)

  it("drops a top-level field named in `strings` that is not text, and only those", function()
    local text = '{"cdn_url": 5, "mode": {"x": 1}, "checkpoint": "dri_done", "error": [1], '
      .. '"progress_pct": 20, "nested": {"cdn_url": 7}, "mask_cdn_url": null}'
    local t = assert(core.decode(text, { cdn_url = true, mode = true, checkpoint = true, error = true,
                                         mask_cdn_url = true }))
    assert.is_nil(t.cdn_url)
    assert.is_nil(t.mode)
    assert.is_nil(t.error)
    assert.is_nil(t.mask_cdn_url)
    assert.are.equal("dri_done", t.checkpoint)
    assert.are.equal(20, t.progress_pct)
    assert.are.equal(7, t.nested.cdn_url) -- the set names top-level fields only
    local plain = assert(core.decode(text))
    assert.are.equal(5, plain.cdn_url)
    assert.has_error(function() core.decode(text, "cdn_url") end)
  end)

  it("returns nil and a message for what is not JSON", function()
    local v, err = core.decode('{"job_id": "x", "status": ')
    assert.is_nil(v)
    assert.is_string(err)
  end)
end)
