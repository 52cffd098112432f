-- Handlers of bench/hosts/nginx.conf.in: the same work with viggle or with
-- the minimal cosocket client (?client=viggle|cosocket).
local ngx = ngx -- luacheck: ignore 113
local viggle = require("viggle")
local cosocket = require("cosocket_client")

local _M = {}
local client

local function viggle_client()
  client = client or assert(viggle.new({ base_url = ngx.var.api, timeout = 60 }))
  return client
end

-- Polls the job every interval until it is complete (the await of each client).
function _M.await()
  local a = ngx.req.get_uri_args()
  local interval = tonumber(a.interval) or 0.2
  if a.client == "cosocket" then
    while true do
      local job, err = cosocket.json(ngx.var.api .. "/api/render/" .. a.id)
      if not job then ngx.status = 500 ngx.say(err) return end
      if job.status == "complete" then break end
      ngx.sleep(interval)
    end
  else
    local job, err = viggle_client():await(a.id, { interval = interval })
    if not job then ngx.status = 500 ngx.say(tostring(err)) return end
  end
  ngx.say("done")
end

function _M.download()
  local a = ngx.req.get_uri_args()
  local bytes, err
  if a.client == "cosocket" then
    bytes, err = cosocket.download(a.url, a.path)
  else
    local path, info = viggle_client():download(a.url, a.path, { overwrite = true })
    bytes, err = path and info.bytes, info
  end
  if not bytes then ngx.status = 500 ngx.say(tostring(err)) return end
  ngx.say(bytes)
end

-- n sequential status calls.
function _M.statuses()
  local a = ngx.req.get_uri_args()
  local n = tonumber(a.n) or 100
  for _ = 1, n do
    local job, err
    if a.client == "cosocket" then
      job, err = cosocket.json(ngx.var.api .. "/api/render/" .. a.id)
    else
      job, err = viggle_client():status(a.id, { retries = 0 })
    end
    if not job then ngx.status = 500 ngx.say(tostring(err)) return end
  end
  ngx.say(n)
end

return _M
