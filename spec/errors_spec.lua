-- viggle.errors without a server: HTTP dates at fixed instants (every month,
-- leap years, centuries), Retry-After, and the kinds HTTP answers map to.
local errors = require("viggle").errors

describe("viggle.errors", function()
  describe("parse_http_date", function()
    -- each instant checked against `date -u +%s -d ...`
    local instants = {
      { "Thu, 01 Jan 1970 00:00:00 GMT", 0 },
      { "Sun, 06 Nov 1994 08:49:37 GMT", 784111777 }, -- the example of RFC 9110
      { "Fri, 31 Dec 1999 23:59:59 GMT", 946684799 },
      { "Tue, 29 Feb 2000 12:00:00 GMT", 951825600 }, -- 2000 is a leap year (divisible by 400)
      { "Wed, 01 Mar 2000 00:00:00 GMT", 951868800 },
      { "Tue, 28 Feb 2023 06:30:15 GMT", 1677565815 },
      { "Wed, 01 Mar 2023 06:30:15 GMT", 1677652215 }, -- one day after, 2023 is no leap year
      { "Thu, 29 Feb 2024 23:59:59 GMT", 1709251199 },
      { "Fri, 01 Mar 2024 00:00:00 GMT", 1709251200 },
      { "Tue, 19 Jan 2038 03:14:08 GMT", 2147483648 }, -- past 2^31
      { "Sun, 28 Feb 2100 00:00:00 GMT", 4107456000 },
      { "Mon, 01 Mar 2100 00:00:00 GMT", 4107542400 }, -- 2100 is no leap year
    }
    -- the 15th of every month of 2025, and the 1st of every month of leap 1996
    local months = {
      { "Wed, 15 Jan 2025 13:14:15 GMT", 1736946855 }, { "Sat, 15 Feb 2025 13:14:15 GMT", 1739625255 },
      { "Sat, 15 Mar 2025 13:14:15 GMT", 1742044455 }, { "Tue, 15 Apr 2025 13:14:15 GMT", 1744722855 },
      { "Thu, 15 May 2025 13:14:15 GMT", 1747314855 }, { "Sun, 15 Jun 2025 13:14:15 GMT", 1749993255 },
      { "Tue, 15 Jul 2025 13:14:15 GMT", 1752585255 }, { "Fri, 15 Aug 2025 13:14:15 GMT", 1755263655 },
      { "Mon, 15 Sep 2025 13:14:15 GMT", 1757942055 }, { "Wed, 15 Oct 2025 13:14:15 GMT", 1760534055 },
      { "Sat, 15 Nov 2025 13:14:15 GMT", 1763212455 }, { "Mon, 15 Dec 2025 13:14:15 GMT", 1765804455 },
      { "Mon, 01 Jan 1996 00:00:00 GMT", 820454400 }, { "Thu, 01 Feb 1996 00:00:00 GMT", 823132800 },
      { "Fri, 01 Mar 1996 00:00:00 GMT", 825638400 }, { "Mon, 01 Apr 1996 00:00:00 GMT", 828316800 },
      { "Wed, 01 May 1996 00:00:00 GMT", 830908800 }, { "Sat, 01 Jun 1996 00:00:00 GMT", 833587200 },
      { "Mon, 01 Jul 1996 00:00:00 GMT", 836179200 }, { "Thu, 01 Aug 1996 00:00:00 GMT", 838857600 },
      { "Sun, 01 Sep 1996 00:00:00 GMT", 841536000 }, { "Tue, 01 Oct 1996 00:00:00 GMT", 844128000 },
      { "Fri, 01 Nov 1996 00:00:00 GMT", 846806400 }, { "Sun, 01 Dec 1996 00:00:00 GMT", 849398400 },
    }
    for _, list in ipairs({ instants, months }) do
      for _, case in ipairs(list) do
        it(case[1], function()
          assert.are.equal(case[2], errors.parse_http_date(case[1]))
        end)
      end
    end

    it("refuses what is not an HTTP date", function()
      assert.is_nil(errors.parse_http_date("Sun, 06 Foo 1994 08:49:37 GMT"))
      assert.is_nil(errors.parse_http_date("Sun, 06 Nov 1994 08:49:37 CET"))
      assert.is_nil(errors.parse_http_date("1994-11-06T08:49:37Z"))
    end)
  end)

  describe("parse_retry_after", function()
    local now = 1739625255 -- Sat, 15 Feb 2025 13:14:15 GMT

    it("reads seconds, of any length", function()
      assert.are.equal(2, errors.parse_retry_after("2", now))
      assert.are.equal(120, errors.parse_retry_after("120", now))
      assert.are.equal(86400, errors.parse_retry_after(" 86400 ", now))
    end)

    it("reads an HTTP date as the seconds from now, in February too", function()
      assert.are.equal(90, errors.parse_retry_after("Sat, 15 Feb 2025 13:15:45 GMT", now))
      assert.are.equal(86400 * 14, errors.parse_retry_after("Sat, 01 Mar 2025 13:14:15 GMT", now))
    end)

    it("reads a date against the precise clock: never a second more than the date says", function()
      -- a date two seconds ahead of this second, read at any moment of it:
      -- os.time() lags a coarse tick and truncates, and read at a second's
      -- edge it would make this three seconds
      local core = require("viggle.core")
      for _ = 1, 50 do
        local t = core.wall()
        local date = os.date("!%a, %d %b %Y %H:%M:%S GMT", math.floor(t) + 2)
        local wait = errors.parse_retry_after(date)
        local want = math.floor(t) + 2 - t
        assert.is_true(wait <= 2 and math.abs(wait - want) < 0.05, string.format("%.4f, not %.4f", wait, want))
        core.sleep(0.0213)
      end
    end)

    it("gives 0 for a date already past, nil for nonsense", function()
      assert.are.equal(0, errors.parse_retry_after("Sat, 15 Feb 2025 13:00:00 GMT", now))
      assert.is_nil(errors.parse_retry_after("soon", now))
      assert.is_nil(errors.parse_retry_after(nil, now))
    end)
  end)

  describe("from_http", function()
    local function err_for(status, body, headers)
      local decoded = body and require("viggle.core").decode(body)
      return errors.from_http({ status = status, body = body or "", headers = headers or {} }, decoded)
    end

    it("maps 401 and 403 to auth, 402 to credits, 404 to not_found, 429 to rate_limited", function()
      assert.are.equal("auth", err_for(401).kind)
      assert.are.equal("auth", err_for(403).kind)
      assert.are.equal("credits", err_for(402).kind)
      assert.are.equal("not_found", err_for(404).kind)
      assert.are.equal("rate_limited", err_for(429).kind)
    end)

    it("takes the message of a plain-string detail", function()
      local e = err_for(403, '{"detail": "Forbidden: this key cannot render"}')
      assert.are.equal("Forbidden: this key cannot render", e.message)
      assert.are.equal(403, e.status)
      assert.is_false(e.retryable)
    end)

    it("makes 408, 429 and every 5xx retryable, and no other 4xx", function()
      for _, s in ipairs({ 408, 429, 500, 502, 503, 504 }) do assert.is_true(err_for(s).retryable, s) end
      for _, s in ipairs({ 400, 401, 403, 404, 409, 422 }) do assert.is_false(err_for(s).retryable, s) end
    end)

    it("carries Retry-After as seconds", function()
      assert.are.equal(30, err_for(503, nil, { ["retry-after"] = "30" }).retry_after)
    end)
  end)
end)
