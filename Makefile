# viggle: build, test, lint, install, bench, demo.
# LUA selects the interpreter: 5.1, 5.2, 5.3, 5.4 (default) or jit.
LUA ?= 5.4
LUAS ?= 5.1 5.2 5.3 5.4 jit

ifeq ($(LUA),jit)
LUA_PC := luajit
LUA_BIN := luajit
LUA_ABI := 5.1
else
LUA_PC := lua$(LUA)
LUA_BIN := lua$(LUA)
LUA_ABI := $(LUA)
endif

CC ?= cc
PKG_CONFIG ?= pkg-config
CFLAGS ?= -O2 -g
WARN := -std=c99 -Wall -Wextra -Werror -pedantic -Wshadow -Wstrict-prototypes -Wmissing-prototypes
CPPFLAGS_ALL := -D_POSIX_C_SOURCE=200809L $(shell $(PKG_CONFIG) --cflags $(LUA_PC) libcurl) $(CPPFLAGS)
# Never link liblua into the module: the interpreter that loads it provides it.
LIBS := $(shell $(PKG_CONFIG) --libs libcurl) -lhiredis -lm -pthread
SANFLAGS ?=

BUILD := build/$(LUA)
SO := $(BUILD)/viggle/core.so
SRCS := csrc/core.c csrc/request.c csrc/multi.c csrc/part.c csrc/json.c csrc/buf.c csrc/error.c csrc/redis.c csrc/worker.c
HDRS := csrc/vg.h csrc/vg_compat.h csrc/buf.h

# Each interpreter's C module in a directory of its own: LuaJIT's build goes
# under lib/luajit/5.1, apart from Lua 5.1's lib/lua/5.1 (both speak the 5.1
# ABI, and one must not replace the other). bin/viggle-$(LUA) is a launcher
# that knows these paths; bin/viggle runs the newest installed one.
PREFIX ?= /usr/local
ifeq ($(LUA),jit)
LUA_LIBDIR ?= $(PREFIX)/lib/luajit/5.1
else
LUA_LIBDIR ?= $(PREFIX)/lib/lua/$(LUA_ABI)
endif
LUA_SHAREDIR ?= $(PREFIX)/share/lua/$(LUA_ABI)
BINDIR ?= $(PREFIX)/bin

.PHONY: all deps test test-one test-all lint install uninstall clean mock demo bench bench-hosts valgrind asan tsan fuzz nvim

all: $(SO)

$(SO): $(SRCS) $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(SANFLAGS) $(WARN) $(CPPFLAGS_ALL) -fPIC -fvisibility=hidden -shared -o $@ $(SRCS) $(LIBS) $(LDFLAGS)

# The Debian packages the build, the tests and the demo need (apt-get; the only target that installs)
deps:
	@bash tools/deps.sh

# Every test on every interpreter (LUAS), or one: make test LUAS=5.4 (after make deps)
test:
	@bash tools/test.sh $(LUAS)

# busted on one interpreter against the built module
test-one: $(SO)
	LUA_CPATH="./$(BUILD)/?.so;;" busted --lua=$(LUA_BIN) -o TAP spec

lint:
	luacheck -q lua spec bench bin
	cppcheck --quiet --error-exitcode=1 --enable=warning,performance,portability --std=c99 --inline-suppr \
	  $(shell $(PKG_CONFIG) --cflags-only-I $(LUA_PC) libcurl) --suppress=missingIncludeSystem --suppress=toomanyconfigs csrc

install: $(SO)
	install -d $(DESTDIR)$(LUA_LIBDIR)/viggle $(DESTDIR)$(LUA_SHAREDIR)/viggle $(DESTDIR)$(BINDIR)
	install -m 0755 $(SO) $(DESTDIR)$(LUA_LIBDIR)/viggle/core.so
	install -m 0644 lua/viggle/*.lua $(DESTDIR)$(LUA_SHAREDIR)/viggle/
	sed -e '1s|.*|#!$(shell command -v $(LUA_BIN))|' \
	  -e 's|^local installed = nil.*|local installed = { "$(LUA_SHAREDIR)/?.lua;$(LUA_SHAREDIR)/?/init.lua", "$(LUA_LIBDIR)/?.so" }|' \
	  bin/viggle > $(DESTDIR)$(BINDIR)/viggle-$(LUA)
	chmod 0755 $(DESTDIR)$(BINDIR)/viggle-$(LUA)
	install -m 0755 tools/viggle.sh $(DESTDIR)$(BINDIR)/viggle

# Removes this interpreter's module and launcher; the Lua files and bin/viggle
# stay while another interpreter's launcher needs them.
uninstall:
	rm -rf $(DESTDIR)$(LUA_LIBDIR)/viggle $(DESTDIR)$(BINDIR)/viggle-$(LUA)
	@if ! grep -ls '$(LUA_SHAREDIR)/' $(DESTDIR)$(BINDIR)/viggle-* >/dev/null 2>&1; then \
	  rm -rf $(DESTDIR)$(LUA_SHAREDIR)/viggle; fi
	@if ! ls $(DESTDIR)$(BINDIR)/viggle-* >/dev/null 2>&1; then rm -f $(DESTDIR)$(BINDIR)/viggle; fi

# Neovim plugin layout: the LuaJIT build where Neovim's package loader finds
# it from 'runtimepath' (lua/viggle/core.so; gitignored). A plugin manager's
# build step: lazy.nvim `build = "make nvim"`, packer `run = "make nvim"`.
nvim:
	$(MAKE) LUA=jit
	cp build/jit/viggle/core.so lua/viggle/core.so

clean:
	rm -rf build bench/out

mock:
	$(LUA_BIN) spec/mock/server.lua run

demo: $(SO)
	@bash tools/demo.sh --no-deps

bench:
	@bash bench/run.sh
	@bash bench/hosts/run.sh

# the host benchmarks alone (issue 11: game loop, nginx, big upload)
bench-hosts:
	@bash bench/hosts/run.sh

# The spec suite under valgrind (memcheck) and AddressSanitizer.
valgrind: $(SO)
	@bash tools/memcheck.sh valgrind

asan:
	@bash tools/memcheck.sh asan

# ThreadSanitizer on the transfer thread (csrc/worker.c)
tsan:
	@bash tools/memcheck.sh tsan

# libFuzzer harnesses (fuzz/), each run FUZZ_SECONDS on its seed corpus.
FUZZ_SECONDS ?= 60
fuzz:
	@bash fuzz/run.sh $(FUZZ_SECONDS)

# Mutation testing: plants each bug of tools/mutants.txt in a scratch copy and
# runs the specs (Lua 5.4) against it; prints each verdict and the score.
#   make mutate JOBS=2 MUTATE_ONLY=heap MUTATE_SPECS="spec/status_spec.lua" MUTATE_TIMEOUT=120
.PHONY: mutate
mutate:
	@JOBS="$(or $(JOBS),2)" lua5.4 tools/mutate.lua
