-- viggle characters ... and viggle scenes ..., run as a user would: a process,
-- its output, its exit code.
local mock_server = require("spec.mock.server")
local cjson = require("cjson")
local support = require("spec.support")

local KEY = "sk-test-valid"

describe("the viggle CLI's characters and scenes", function()
  local m, tmp

  setup(function()
    m = assert(mock_server.start())
    tmp = m.prefix .. "/cli"
    os.execute("mkdir -p " .. tmp)
  end)
  teardown(function() if m then m:stop() end end)
  before_each(function()
    m:reset()
    m:config({ asset_job = { advance = "poll" } })
  end)

  -- runs bin/viggle with args (shell-quoted); returns rc, stdout, stderr
  local function viggle(args)
    return support.viggle_cli(tmp, "VIGGLE_BASE_URL=" .. m.base_url .. " VIGGLE_API_KEY=" .. KEY, args)
  end

  local function lines(s)
    local out = {}
    for l in s:gmatch("[^\n]+") do out[#out + 1] = l end
    return out
  end

  it("--help lists every command, and each has its own help", function()
    local rc, out = viggle("--help")
    assert.are.equal(0, rc)
    assert.matches("characters list|get|create|delete|wait", out, 1, true)
    assert.matches("scenes list|get|create|import|delete|wait", out, 1, true)
    for _, cmd in ipairs({ "characters", "scenes" }) do
      rc, out = viggle(cmd .. " --help")
      assert.are.equal(0, rc)
      for _, sub in ipairs({ "list", "get", "create", "delete", "wait" }) do
        assert.matches("viggle " .. cmd .. " " .. sub, out, 1, true)
      end
      rc, out = viggle("help " .. cmd)
      assert.are.equal(0, rc)
      assert.matches("viggle " .. cmd .. " list", out, 1, true)
    end
    assert.matches("viggle scenes import --template ID --name NAME", out, 1, true)
  end)

  it("refuses an unknown subcommand, an option of another, and missing ids (exit 2)", function()
    local rc, _, err = viggle("characters frob")
    assert.are.equal(2, rc)
    assert.matches("unknown characters command 'frob'", err)
    rc, _, err = viggle("scenes get --limit 3 scene_1")
    assert.are.equal(2, rc)
    assert.matches("scenes get takes no %-%-limit", err)
    rc, _, err = viggle("characters wait")
    assert.are.equal(2, rc)
    assert.matches("at least one ID", err)
    rc = viggle("characters")
    assert.are.equal(2, rc)
    rc, _, err = viggle("characters create --name a --video x.mp4")
    assert.are.equal(2, rc)
    assert.matches("unknown option %-%-video", err)
    assert.are.equal(0, #m:log())
  end)

  it("characters create prints the id; --wait follows it to ready with the progress lines", function()
    local rc, out = viggle("characters create --name Ada --image spec/mock/files/character.png")
    assert.are.equal(0, rc)
    local id = out:match("^(char_%w+)\n$")
    assert.truthy(id, out)
    assert.are.equal("character.png", m:log()[1].form.image.filename)
    local err
    local _
    rc, _, err = viggle("characters create --name Bo --image-url https://x/b.png --wait --interval 0.05")
    assert.are.equal(0, rc)
    local l = lines(err) -- people's lines: stderr
    assert.matches("^started char_", l[1])
    assert.matches("pending", l[2])
    assert.matches("processing", l[3])
    assert.matches("ready%s+%[#+%] 100%%", l[#l])
  end)

  it("list, list --json, list --all, get --json", function()
    local a = m:character({ name = "Ann" })
    local b = m:character({ name = "Ben", outcome = "failed" })
    local rc, out, err = viggle("characters list --limit 1 --offset 1")
    local _
    assert.are.equal(0, rc)
    assert.matches("^" .. b .. "%s+pending%s+Ben\n$", out)
    assert.matches("2%-2 of 2 characters", err)
    rc, out = viggle("characters list --json")
    assert.are.equal(0, rc)
    local page = cjson.decode(out)
    assert.are.equal(2, page.total)
    assert.are.equal(a, page.characters[1].character_id)
    rc, out = viggle("characters list --all --limit 1 --json")
    assert.are.equal(0, rc)
    assert.are.equal(2, #lines(out))
    assert.are.equal(b, cjson.decode(lines(out)[2]).id)
    rc, out = viggle("characters get " .. a)
    assert.are.equal(0, rc)
    assert.matches("^" .. a .. "\n  status:%s+pending\n  name:%s+Ann\n", out)
    rc, _, err = viggle("characters list --limit 0")
    assert.are.equal(1, rc)
    assert.matches("limit must be a whole number from 1 to 100", err)
  end)

  it("scenes create, import --json, wait, delete", function()
    local rc, out = viggle("scenes create --name S --video spec/mock/files/demo.mp4 --background solid --model V3_Preview")
    assert.are.equal(0, rc)
    local sid = out:match("^(scene_%w+)\n$")
    local form = m:log()[1].form
    assert.are.equal("solid", form.background_mode.value)
    assert.are.equal("V3_Preview", form.model.value)
    rc, out = viggle("scenes import --template tpl_1 --name Duo --json")
    assert.are.equal(0, rc)
    local imp = cjson.decode(out)
    assert.are.equal(2, #imp.segments)
    rc, out = viggle("scenes wait " .. sid .. " " .. imp.scene_id .. " --interval 0.05 --json")
    assert.are.equal(0, rc)
    local l = lines(out)
    assert.are.equal(2, #l)
    assert.are.equal("ready", cjson.decode(l[1]).status)
    assert.are.equal(imp.scene_id, cjson.decode(l[2]).scene_id)
    rc, out = viggle("scenes delete " .. sid .. " --json")
    assert.are.equal(0, rc)
    assert.are.same({ scene_id = sid, success = true }, cjson.decode(out))
    local _, err
    rc, _, err = viggle("scenes get " .. sid)
    assert.are.equal(1, rc)
    assert.matches("not_found", err)
  end)

  it("wait exits 3 when an asset failed, 5 when it timed out", function()
    local bad = m:character({ outcome = "failed", error_code = "CS-ORIV-007", error_message = "unreadable" })
    local rc, _, err = viggle("characters wait " .. bad .. " --interval 0.05")
    assert.are.equal(3, rc)
    assert.matches("failed", lines(err)[#lines(err) - 1]) -- the progress line, then the error
    assert.matches("asset_failed: unreadable %(CS%-ORIV%-007, character " .. bad, err)
    local out
    rc, out = viggle("characters wait " .. bad .. " --json")
    assert.are.equal(3, rc)
    assert.are.same({ character_id = bad, error = { kind = "asset_failed", code = "CS-ORIV-007", message = "unreadable" } },
      cjson.decode(out))
    local stuck = m:scene({ outcome = "stuck" })
    rc = viggle("scenes wait " .. stuck .. " --timeout 0.3")
    assert.are.equal(5, rc)
  end)
end)
