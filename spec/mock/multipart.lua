-- A streaming multipart/form-data parser for the mock (RFC 7578 / RFC 2046).
-- The body comes in chunks (from memory or from nginx's temp file), so an
-- upload of any size is parsed with bounded memory: file parts are only
-- counted and hashed, text fields are kept (up to VALUE_CAP bytes).
local md5 = require("md5")

local M = {}

local VALUE_CAP = 1024 * 1024
local HEADER_CAP = 64 * 1024

-- boundary(content_type) -> boundary string or nil
function M.boundary(content_type)
  if not content_type then return nil end
  local lower = content_type:lower()
  if not lower:find("^%s*multipart/form%-data") then return nil end
  local s = lower:find("boundary=", 1, true)
  if not s then return nil end
  local rest = content_type:sub(s + #"boundary=")
  local q = rest:match('^"([^"]*)"')
  if q then return q ~= "" and q or nil end
  local b = rest:match("^([^;%s]+)")
  return b
end

local function param(header, name)
  -- name="value" (with \" escapes) or name=token; case-insensitive name
  local _, e = header:lower():find(";%s*" .. name .. "%s*=%s*")
  if not e then return nil end
  local rest = header:sub(e + 1)
  if rest:sub(1, 1) ~= '"' then return rest:match("^([^;%s]*)") end
  local out, i = {}, 2
  while i <= #rest do
    local c = rest:sub(i, i)
    if c == "\\" then
      out[#out + 1] = rest:sub(i + 1, i + 1)
      i = i + 2
    elseif c == '"' then
      break
    else
      out[#out + 1] = c
      i = i + 1
    end
  end
  return table.concat(out)
end

local function parse_headers(block)
  local h = {}
  for line in (block .. "\r\n"):gmatch("(.-)\r\n") do
    local k, v = line:match("^([^:]+):%s*(.-)%s*$")
    if k then h[k:lower()] = v end
  end
  return h
end

local function new_part(headers)
  local cd = headers["content-disposition"] or ""
  local part = {
    name = param(cd, "name"),
    filename = param(cd, "filename"),
    content_type = headers["content-type"],
    size = 0,
  }
  if part.filename then
    part.digest = md5.new()
  else
    part.chunks = {}
    part.kept = 0
  end
  return part
end

local function feed(part, data)
  if data == "" then return end
  part.size = part.size + #data
  if part.digest then
    part.digest:update(data)
  elseif part.kept < VALUE_CAP then
    local take = data
    if part.kept + #take > VALUE_CAP then take = take:sub(1, VALUE_CAP - part.kept) end
    part.chunks[#part.chunks + 1] = take
    part.kept = part.kept + #take
  end
end

local function finish(part)
  if part.digest then
    part.md5 = part.digest:final()
    part.digest = nil
  else
    part.value = table.concat(part.chunks)
    part.truncated = part.size > part.kept or nil
    part.chunks, part.kept = nil, nil
  end
  return part
end

-- parse(boundary, next_chunk) -> list of parts, or nil, err
-- next_chunk() returns the next string of the body or nil at the end.
-- A part is {name=, filename=, content_type=, size=, md5= (files) | value= (fields)}.
function M.parse(boundary, next_chunk)
  local delim = "\r\n--" .. boundary
  local dlen = #delim
  local buf = "\r\n" -- so that a body starting with --boundary matches delim
  local eof = false
  local parts = {}

  local function fill()
    if eof then return false end
    local c = next_chunk()
    if c == nil then eof = true; return false end
    buf = buf .. c
    return true
  end

  -- preamble: skip to the first delimiter
  while true do
    local s, e = buf:find(delim, 1, true)
    if s then buf = buf:sub(e + 1); break end
    if #buf > dlen then buf = buf:sub(-(dlen - 1)) end
    if not fill() then return nil, "multipart: no boundary found" end
  end

  while true do
    -- after a delimiter: "--" ends the body, else padding up to CRLF
    while #buf < 2 do
      if not fill() then return nil, "multipart: body ends after a boundary" end
    end
    if buf:sub(1, 2) == "--" then return parts end
    local crlf
    while true do
      crlf = buf:find("\r\n", 1, true)
      if crlf then break end
      if #buf > HEADER_CAP then return nil, "multipart: boundary line too long" end
      if not fill() then return nil, "multipart: body ends in a boundary line" end
    end
    buf = buf:sub(crlf + 2)

    -- part headers, up to an empty line
    local headers
    while true do
      if buf:sub(1, 2) == "\r\n" then
        headers = {}
        buf = buf:sub(3)
        break
      end
      local s, e = buf:find("\r\n\r\n", 1, true)
      if s then
        headers = parse_headers(buf:sub(1, s - 1))
        buf = buf:sub(e + 1)
        break
      end
      if #buf > HEADER_CAP then return nil, "multipart: part headers too long" end
      if not fill() then return nil, "multipart: body ends in part headers" end
    end

    -- part data, up to the next delimiter
    local part = new_part(headers)
    while true do
      local s, e = buf:find(delim, 1, true)
      if s then
        feed(part, buf:sub(1, s - 1))
        buf = buf:sub(e + 1)
        break
      end
      if #buf >= dlen then
        feed(part, buf:sub(1, #buf - (dlen - 1)))
        buf = buf:sub(#buf - (dlen - 1) + 1)
      end
      if not fill() then return nil, "multipart: body ends inside a part (no closing boundary)" end
    end
    parts[#parts + 1] = finish(part)
  end
end

return M
