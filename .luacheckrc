std = "max"
codes = true
max_line_length = 130
exclude_files = { "build/**", "spec/mock/run/**" }
files["spec/**"] = { std = "+busted" }
files["spec/mock/**"] = { std = "+ngx_lua", globals = { "ngx" } }
files["lua/viggle/nvim.lua"] = { read_globals = { "vim" } }
