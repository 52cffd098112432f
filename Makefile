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
LIBS := $(shell $(PKG_CONFIG) --libs libcurl) -lm -pthread
SANFLAGS ?=

BUILD := build/$(LUA)
SO := $(BUILD)/viggle/core.so
SRCS := csrc/core.c csrc/request.c csrc/multi.c csrc/part.c csrc/json.c csrc/buf.c csrc/error.c csrc/worker.c
HDRS := csrc/vg.h csrc/vg_compat.h csrc/buf.h

PREFIX ?= /usr/local
LUA_LIBDIR ?= $(PREFIX)/lib/lua/$(LUA_ABI)
LUA_SHAREDIR ?= $(PREFIX)/share/lua/$(LUA_ABI)
BINDIR ?= $(PREFIX)/bin

.PHONY: all deps test test-one test-all lint install uninstall clean mock demo bench bench-hosts valgrind asan tsan fuzz

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
	sed '1s|.*|#!$(shell command -v $(LUA_BIN))|' bin/viggle > $(DESTDIR)$(BINDIR)/viggle
	chmod 0755 $(DESTDIR)$(BINDIR)/viggle

uninstall:
	rm -rf $(DESTDIR)$(LUA_LIBDIR)/viggle $(DESTDIR)$(LUA_SHAREDIR)/viggle $(DESTDIR)$(BINDIR)/viggle

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
