-- Streaming MD5 for the mock (runs inside nginx/LuaJIT).
-- Uploads can be gigabytes, so the digest is fed chunk by chunk through
-- OpenSSL's EVP API, which the nginx binary already links (libcrypto.so.3).
-- If FFI or the symbols are unavailable, fall back to ngx.md5 over a buffer
-- capped at 64 MiB (md5 = nil past that).
local ffi_ok, ffi = pcall(require, "ffi")

local M = {}

local C
if ffi_ok then
  pcall(ffi.cdef, [[
typedef struct evp_md_ctx_st EVP_MD_CTX;
typedef struct evp_md_st EVP_MD;
typedef struct engine_st ENGINE;
EVP_MD_CTX *EVP_MD_CTX_new(void);
void EVP_MD_CTX_free(EVP_MD_CTX *ctx);
const EVP_MD *EVP_md5(void);
int EVP_DigestInit_ex(EVP_MD_CTX *ctx, const EVP_MD *type, ENGINE *impl);
int EVP_DigestUpdate(EVP_MD_CTX *ctx, const void *d, size_t cnt);
int EVP_DigestFinal_ex(EVP_MD_CTX *ctx, unsigned char *md, unsigned int *s);
]])
  local ok = pcall(function() return ffi.C.EVP_md5 end)
  if ok then
    C = ffi.C
  else
    local lok, lib = pcall(ffi.load, "libcrypto.so.3")
    if lok then C = lib end
  end
end

local function hex(s)
  return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

local FALLBACK_CAP = 64 * 1024 * 1024

-- new() -> object with :update(str) and :final() -> hex string or nil
function M.new()
  if C then
    local ctx = C.EVP_MD_CTX_new()
    if ctx ~= nil then
      ffi.gc(ctx, C.EVP_MD_CTX_free)
      C.EVP_DigestInit_ex(ctx, C.EVP_md5(), nil)
      return {
        update = function(_, s) C.EVP_DigestUpdate(ctx, s, #s) end,
        final = function()
          local out = ffi.new("unsigned char[16]")
          C.EVP_DigestFinal_ex(ctx, out, nil)
          return hex(ffi.string(out, 16))
        end,
      }
    end
  end
  local parts, size = {}, 0
  return {
    update = function(_, s)
      size = size + #s
      if size <= FALLBACK_CAP then parts[#parts + 1] = s end
    end,
    final = function()
      if size > FALLBACK_CAP then return nil end
      return ngx.md5(table.concat(parts))
    end,
  }
end

return M
