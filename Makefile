# libagave build. `make` builds the library and programs into build/;
# `make check` installs missing packages (scripts/deps.sh), builds and runs every test.
# See README.md for the other targets.

PREFIX ?= /usr/local
DESTDIR ?=
LIBDIR ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
BINDIR ?= $(PREFIX)/bin
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig

CC ?= cc
BUILD ?= build

# The soname major and full version come from the header, the single source.
VERSION_H := include/agave_version.h
MAJOR := $(shell sed -n 's/^\#define AGAVE_VERSION_MAJOR \([0-9]*\)/\1/p' $(VERSION_H))
MINOR := $(shell sed -n 's/^\#define AGAVE_VERSION_MINOR \([0-9]*\)/\1/p' $(VERSION_H))
PATCH := $(shell sed -n 's/^\#define AGAVE_VERSION_PATCH \([0-9]*\)/\1/p' $(VERSION_H))
VERSION := $(MAJOR).$(MINOR).$(PATCH)

WARN := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wno-unknown-pragmas
OPT ?= -O2 -g
SAN ?=
BASE_CFLAGS := -std=c11 -D_DEFAULT_SOURCE $(WARN) $(OPT) $(SAN) -fopenmp
LIB_CFLAGS := $(BASE_CFLAGS) -fPIC -fvisibility=hidden -DAGAVE_BUILDING_LIBRARY -Iinclude
LIBS := -lopenblas -lz -lm
LDLIBS := $(LIBS) -fopenmp $(SAN)

LIB_SRC := $(sort $(wildcard lib/*/*.c))
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
SONAME := libagave.so.$(MAJOR)
SHARED := $(BUILD)/lib/libagave.so.$(VERSION)
STATIC := $(BUILD)/lib/libagave.a
MAPFILE := lib/agave.map

PROGRAMS := $(patsubst examples/%.c,$(BUILD)/bin/%,$(wildcard examples/agave-*.c))
EXAMPLES := $(patsubst examples/%.c,$(BUILD)/bin/%,$(filter-out examples/agave-%,$(wildcard examples/*.c)))

TEST_SRC := $(sort $(wildcard tests/test_*.c))
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
TEST_SUPPORT := $(sort $(wildcard tests/support/*.c))
BENCH_BIN := $(patsubst bench/%.c,$(BUILD)/bench/%,$(wildcard bench/*.c))

.PHONY: all lib programs tests check run-tests bench clean deps install uninstall
all: lib programs

lib: $(SHARED) $(STATIC) $(BUILD)/lib/libagave.so

$(BUILD)/obj/%.o: %.c $(wildcard include/*.h) $(wildcard lib/*/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(LIB_CFLAGS) -c $< -o $@

$(SHARED): $(LIB_OBJ) $(MAPFILE)
	@mkdir -p $(dir $@)
	$(CC) -shared -Wl,-soname,$(SONAME) -Wl,--version-script=$(MAPFILE) -Wl,--no-undefined \
	    -o $@ $(LIB_OBJ) $(LDLIBS)

$(BUILD)/lib/libagave.so: $(SHARED)
	ln -sf libagave.so.$(VERSION) $(BUILD)/lib/$(SONAME)
	ln -sf $(SONAME) $@

$(STATIC): $(LIB_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@
	ar rcs $@ $(LIB_OBJ)

# Programs link the static library so build/bin works without installing.
$(BUILD)/bin/%: examples/%.c $(wildcard examples/*.h) $(STATIC)
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) -Iinclude -Iexamples $< $(wildcard examples/common/*.c) $(STATIC) $(LDLIBS) -o $@

programs: $(PROGRAMS) $(EXAMPLES)

# Tests link the static library and may use internal headers (lib/).
$(BUILD)/tests/%: tests/%.c $(TEST_SUPPORT) $(wildcard tests/support/*.h) $(STATIC)
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) -Wno-shadow -Iinclude -Ilib -Itests $< $(TEST_SUPPORT) $(STATIC) -lcmocka $(LDLIBS) -o $@

tests: $(TEST_BIN)

$(BUILD)/bench/%: bench/%.c $(STATIC)
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) -O3 -Iinclude -Ilib $< $(STATIC) $(LDLIBS) -o $@

bench: $(BENCH_BIN)

deps:
	@sh scripts/deps.sh check

# Runs every test binary; fails if any fails, after running all of them.
run-tests: tests programs
	@fail=0; for t in $(TEST_BIN); do \
	    echo "== $$t"; AGAVE_BUILD=$(BUILD) ./$$t || fail=1; done; exit $$fail

check: deps
	@$(MAKE) --no-print-directory run-tests

clean:
	rm -rf build build-*
