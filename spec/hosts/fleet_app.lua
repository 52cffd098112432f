-- Handlers for spec/hosts/fleet_nginx.conf.in: a request enqueues an item in a
-- batch kept in Redis (viggle.fleet.enqueue, over a cosocket); a timer of the
-- worker runs viggle.fleet.work every 0.2 s when it is not already running.
-- Times are viggle.core.now() (CLOCK_MONOTONIC, the spec's clock), in seconds.
local ngx = ngx -- luacheck: ignore 113
local cjson = require("cjson.safe")
local core = require("viggle.core")
local fleet = require("viggle.fleet")
local viggle = require("viggle")

local now = core.now
local _M = {}

local cfg = {}
local st = { runs = 0, longest = 0, busy = false }

local function answer(t)
  ngx.header["Content-Type"] = "application/json"
  ngx.say(cjson.encode(t))
end

local function tick(premature)
  if premature or st.busy then return end
  st.busy = true
  local t0 = now()
  local ok, report, err = xpcall(fleet.work, function(e) return debug.traceback(tostring(e)) end, cfg.redis, cfg.name, {
    client = cfg.client, lease = 3, interval = 0.1, concurrency = 2,
  })
  local took = now() - t0
  st.runs = st.runs + 1
  if took > st.longest then st.longest = took end
  if not ok then st.last_err = tostring(report)
  elseif not report then st.last_err = tostring(err)
  else
    st.last_err = nil
    st.downloaded = report.counts and report.counts.downloaded or 0
  end
  st.busy = false
end

function _M.start(mock_url, redis_url, name)
  cfg.redis, cfg.name = redis_url, name
  cfg.client = assert(viggle.new({ base_url = mock_url, api_key = "sk-test-valid", timeout = 5 }))
  assert(ngx.timer.every(0.2, tick))
end

function _M.enqueue()
  local a = ngx.req.get_uri_args()
  local t0 = now()
  local ok, err = fleet.enqueue(cfg.redis, cfg.name, { key = a.key, character_id = a.char, driving_video = a.video,
                                                       output = a.output })
  answer({ ok = ok or false, err = err and tostring(err), seconds = now() - t0 })
end

function _M.state()
  local reset = ngx.req.get_uri_args().reset
  if reset then st.longest = 0 end
  answer({ runs = st.runs, longest = st.longest, busy = st.busy, last_err = st.last_err,
           downloaded = st.downloaded })
end

function _M.ping()
  answer({ pong = true, t = now() })
end

return _M
