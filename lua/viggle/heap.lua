--- A binary min-heap of entries keyed by their first element (`e[1]`, a time).
--- The scheduler's timers and await_all's due polls both live in one.
local _M = {}
_M.__index = _M

---@return table heap an empty heap; `heap.n` is its size
function _M.new()
  return setmetatable({ n = 0 }, _M)
end

--- Adds an entry.
---@param e table an entry whose e[1] is its key
---@return nil
function _M:push(e)
  local n = self.n + 1
  self.n = n
  local i, key = n, e[1]
  while i > 1 do
    local p = (i - i % 2) / 2
    local pe = self[p]
    if pe[1] <= key then break end
    self[i] = pe
    i = p
  end
  self[i] = e
end

--- The entry with the smallest key, or nil; it stays in the heap.
---@return table|nil
function _M:peek()
  return self[1]
end

--- Removes and returns the entry with the smallest key, or nil.
---@return table|nil
function _M:pop()
  local n = self.n
  if n == 0 then return nil end
  local top, last = self[1], self[n]
  self[n] = nil
  n = n - 1
  self.n = n
  if n > 0 then
    local i, key = 1, last[1]
    while true do
      local l = 2 * i
      if l > n then break end
      local c = l
      if l + 1 <= n and self[l + 1][1] < self[l][1] then c = l + 1 end
      if self[c][1] >= key then break end
      self[i] = self[c]
      i = c
    end
    self[i] = last
  end
  return top
end

return _M
