# libagave build (GNU make).
#
#   make                  the library (shared and static) and the programs, into $(BUILD)/
#   make check            install missing Debian packages (scripts/deps.sh), build, run every test
#   make sanitize         the same test suite built with ASan + UBSan, in build-san/
#   make valgrind         a subset of the suite and the programs under valgrind memcheck
#   make tsan             the thread-safety test under ThreadSanitizer, in build-tsan/
#   make fuzz             libFuzzer harnesses of the readers, the checkpoint loader and the
#                         configuration parser, FUZZ_SECONDS each (default 60), in
#                         build-fuzz/ (docs/reliability.md)
#   make install          headers, libraries, agave.pc and programs under $(DESTDIR)$(PREFIX)
#   make uninstall        removes what `make install` put there
#   make abi-check        compares the built library's ABI with the baseline abi/libagave.abi
#   make abi-dump         rewrites that baseline (a deliberate ABI change; see docs/build.md)
#   make bench            benchmark programs (bench/*.c) into $(BUILD)/bench/
#   make MPI=1            also the programs with MPI (data-parallel training) in build-mpi/
#   make check-mpi        tests of the MPI programs under mpirun (2 ranks)
#   make clean
#
# docs/build.md describes the targets, the variables and the ABI policy.
# Add V=1 to see the full compiler command lines.

# ---- where things are installed ---------------------------------------------
PREFIX ?= /usr/local
DESTDIR ?=
LIBDIR ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
BINDIR ?= $(PREFIX)/bin
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
CMAKEDIR ?= $(LIBDIR)/cmake/agave
MANDIR ?= $(PREFIX)/share/man
DOCDIR ?= $(PREFIX)/share/doc/libagave
# The Python binding goes where the prefix's Python finds packages: Debian
# keeps /usr's in lib/python3/dist-packages and other prefixes' in
# lib/python3.X/dist-packages. PYTHON is only asked for its version; without
# a Python 3 the binding is not installed (make install says so).
PYTHON ?= $(firstword $(wildcard /usr/bin/python3) python3)
PYTHON_VERSION = $(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])' \
    2>/dev/null)
PYTHONDIR ?= $(if $(filter /usr,$(PREFIX)),$(PREFIX)/lib/python3/dist-packages,$(if \
    $(PYTHON_VERSION),$(PREFIX)/lib/python$(PYTHON_VERSION)/dist-packages))

# ---- how things are built -----------------------------------------------------
# CC defaults to make's built-in `cc`. BUILD is the output directory, so that
# differently configured builds (build-san/ for the sanitizers) never mix objects.
BUILD ?= build
# Optimisation and debug flags. Keep -g: abi-dump and abi-check read the DWARF
# types of the shared library. No -march=native: the installed library must run
# on any x86-64 (hot kernels dispatch at run time instead).
OPT ?= -O2 -g
# Sanitizer flags, set by `make sanitize`; added to every compile and link.
SAN ?=
# The user's own flags (e.g. a distribution's hardening flags) come last, so they win.
CPPFLAGS ?=
CFLAGS ?=
LDFLAGS ?=
# Development only: extra object files linked into both libraries (e.g. stubs
# for functions another change has not landed yet). Never used by a release.
EXTRA_OBJ ?=

# The soname major and the full version come from the header, the single source.
VERSION_H := include/agave_version.h
MAJOR := $(shell sed -n 's/^\#define AGAVE_VERSION_MAJOR \([0-9]*\)/\1/p' $(VERSION_H))
MINOR := $(shell sed -n 's/^\#define AGAVE_VERSION_MINOR \([0-9]*\)/\1/p' $(VERSION_H))
PATCH := $(shell sed -n 's/^\#define AGAVE_VERSION_PATCH \([0-9]*\)/\1/p' $(VERSION_H))
VERSION := $(MAJOR).$(MINOR).$(PATCH)
ifeq ($(strip $(MAJOR)),)
$(error cannot read AGAVE_VERSION_MAJOR from $(VERSION_H))
endif

# -Wno-unknown-pragmas: `#pragma omp` stays silent if someone builds without OpenMP.
WARN := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wno-unknown-pragmas
# -D_DEFAULT_SOURCE: POSIX/BSD declarations (e.g. rename, fsync) next to strict C11.
# -ffp-contract=off: -std=c11 implies it, but say it outright: the element-wise
# kernels' AVX-512, AVX2 and baseline clones round identically only without fused
# multiply-adds (lib/ops/activation.c).
BASE_CFLAGS := -std=c11 -D_DEFAULT_SOURCE -ffp-contract=off $(WARN) $(OPT) $(SAN) -fopenmp
# -fvisibility=hidden: only functions marked AGAVE_API are exported; the version
# script lib/agave.map then puts exactly the agave_* names under the version node.
# -MMD -MP: each object records the headers it includes ($(BUILD)/obj/**/*.d),
# so a header change rebuilds exactly what uses it (programs and tests are
# relinked through the static library).
LIB_CFLAGS := $(BASE_CFLAGS) -fPIC -fvisibility=hidden -DAGAVE_BUILDING_LIBRARY -Iinclude \
    -MMD -MP $(CPPFLAGS) $(CFLAGS)
PROG_CFLAGS := $(BASE_CFLAGS) -Iinclude $(CPPFLAGS) $(CFLAGS)
# What the library itself links against. The OpenMP runtime comes with -fopenmp.
LIBS := -lopenblas -lz -ljpeg -lpng16 -lm
LDLIBS := $(LIBS) -fopenmp $(SAN) $(LDFLAGS)

# The shared library: the soname carries the major version; the version script
# exports the agave_* names under the version node and hides everything else.
# --no-undefined: a missing function fails here, not in a user's program.
# --as-needed: DT_NEEDED only for libraries the code really calls.
SO_LDFLAGS = -shared -Wl,-soname,$(SONAME) -Wl,--version-script=$(MAPFILE) \
    -Wl,--no-undefined -Wl,--as-needed

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
# Shell tests (tests/*.sh): the export check, the out-of-tree consumer build, ...
SHELL_TESTS := $(sort $(wildcard tests/*.sh))
BENCH_BIN := $(patsubst bench/%.c,$(BUILD)/bench/%,$(wildcard bench/*.c))

# Short build lines ("  CC     lib/core/arena.c") unless V=1 (full commands)
# or make -s (nothing).
ifeq ($(V),1)
Q :=
msg = @:
else ifneq ($(findstring s,$(firstword -$(MAKEFLAGS))),)
Q := @
msg = @:
else
Q := @
msg = @printf '  %-6s %s\n' $(1) $(2)
endif

.PHONY: all lib programs man tests check run-tests sanitize bench clean deps install uninstall \
    abi-dump abi-check FORCE
all: lib programs man

lib: $(SHARED) $(STATIC) $(BUILD)/lib/$(SONAME) $(BUILD)/lib/libagave.so

# Every compile and link depends on this file, which changes only when the
# flags do: `make OPT=-O0` after `make` rebuilds instead of mixing objects.
FLAGS_FILE := $(BUILD)/flags.txt
# (Passed through the environment to avoid any quoting of the flags.)
$(FLAGS_FILE): export AGAVE_FLAGS = $(CC) $(LIB_CFLAGS) | $(PROG_CFLAGS) | $(SO_LDFLAGS) $(LDLIBS) | $(PROG_LDLIBS) | $(EXTRA_OBJ)
$(FLAGS_FILE): FORCE
	@mkdir -p $(@D)
	@printf '%s\n' "$$AGAVE_FLAGS" >$@.new
	@if cmp -s $@.new $@; then rm -f $@.new; else mv -f $@.new $@; fi

$(BUILD)/obj/%.o: %.c $(FLAGS_FILE)
	$(call msg,CC,$<)
	@mkdir -p $(@D)
	$(Q)$(CC) $(LIB_CFLAGS) -c $< -o $@

-include $(LIB_OBJ:.o=.d)

$(SHARED): $(LIB_OBJ) $(EXTRA_OBJ) $(MAPFILE) $(FLAGS_FILE)
	$(call msg,LD,$@)
	@mkdir -p $(@D)
	$(Q)$(CC) $(SO_LDFLAGS) -o $@ $(LIB_OBJ) $(EXTRA_OBJ) $(LDLIBS)

# The usual symlinks: libagave.so.MAJOR (the soname, found at run time) and
# libagave.so (found by -lagave at link time).
$(BUILD)/lib/$(SONAME): $(SHARED)
	$(Q)ln -sf libagave.so.$(VERSION) $@
$(BUILD)/lib/libagave.so: $(BUILD)/lib/$(SONAME)
	$(Q)ln -sf $(SONAME) $@

$(STATIC): $(LIB_OBJ) $(EXTRA_OBJ)
	$(call msg,AR,$@)
	@mkdir -p $(@D)
	$(Q)rm -f $@
	$(Q)ar rcs $@ $(LIB_OBJ) $(EXTRA_OBJ)

# Programs link the shared library, as a user's program would, so that an
# installed libagave.so.MAJOR serves them too. The run path $ORIGIN/../lib finds
# it beside them both in the build tree (build/bin -> build/lib, no installing
# needed) and after `make install` (BINDIR -> LIBDIR with the default layout;
# elsewhere the loader's usual search, ldconfig, applies). They see only the
# public header (no -Ilib), like any user's program, plus the shared
# command-line helpers in examples/common/.
# examples/common/dist.c makes them one process; the MPI build below links
# dist_mpi.c in its place.
COMMON_SRC := $(filter-out examples/common/dist_mpi.c,$(wildcard examples/common/*.c))
PROG_RPATH := -Wl,-rpath,'$$ORIGIN/../lib'
PROG_LDLIBS := -L$(BUILD)/lib -lagave $(PROG_RPATH) -lm $(SAN) $(LDFLAGS)
$(BUILD)/bin/%: examples/%.c $(wildcard examples/*.h examples/common/*.h) $(COMMON_SRC) \
    $(BUILD)/lib/libagave.so $(FLAGS_FILE)
	$(call msg,CC,$@)
	@mkdir -p $(@D)
	$(Q)$(CC) $(PROG_CFLAGS) -Iexamples $< $(COMMON_SRC) $(PROG_LDLIBS) -o $@

programs: $(PROGRAMS) $(EXAMPLES)

# Man pages: each program's is man/PROGRAM.1.in (man/default.1.in if there is
# none) with the synopsis, description and options the program prints itself
# (scripts/man.sh), so the pages cannot drift from --help; libagave(3) is
# written by hand (tests/man_pages.sh checks every name it uses).
MAN1 := $(PROGRAMS:$(BUILD)/bin/%=$(BUILD)/man/%.1)
MAN3 := $(BUILD)/man/libagave.3
$(BUILD)/man/%.1: $(BUILD)/bin/% $(wildcard man/*.1.in) scripts/man.sh $(VERSION_H)
	$(call msg,MAN,$@)
	@mkdir -p $(@D)
	$(Q)sh scripts/man.sh $< $(VERSION) >$@.tmp && mv $@.tmp $@
$(BUILD)/man/%.3: man/%.3.in scripts/man.sh $(VERSION_H)
	$(call msg,MAN,$@)
	@mkdir -p $(@D)
	$(Q)sh scripts/man.sh --page $< $(VERSION) >$@.tmp && mv $@.tmp $@

man: $(MAN1) $(MAN3)

# Tests link the static library and may use internal headers (lib/).
$(BUILD)/tests/%: tests/%.c $(TEST_SUPPORT) $(wildcard tests/support/*.h) $(STATIC) \
    $(FLAGS_FILE)
	$(call msg,CC,$@)
	@mkdir -p $(@D)
	$(Q)$(CC) $(PROG_CFLAGS) -Wno-shadow -Ilib -Itests $< $(TEST_SUPPORT) $(STATIC) -lcmocka \
	    $(LDLIBS) -o $@

tests: $(TEST_BIN)

$(BUILD)/bench/%: bench/%.c $(STATIC) $(FLAGS_FILE)
	$(call msg,CC,$@)
	@mkdir -p $(@D)
	$(Q)$(CC) $(PROG_CFLAGS) -O3 -Ilib $< $(STATIC) $(LDLIBS) -o $@

# bench/gemm compares matrix-product sources: oneDNN and libxsmm join in when
# their headers are installed (scripts/deps.sh bench); the library links neither.
HAVE_DNNL := $(wildcard /usr/include/oneapi/dnnl/dnnl.h)
HAVE_XSMM := $(wildcard /usr/include/libxsmm.h)
BENCH_GEMM_FLAGS := $(if $(HAVE_DNNL),-DHAVE_DNNL) $(if $(HAVE_XSMM),-DHAVE_XSMM)
BENCH_GEMM_LIBS := $(if $(HAVE_DNNL),-ldnnl) \
    $(if $(HAVE_XSMM),/usr/lib/libxsmm.a /usr/lib/libxsmmnoblas.a -ldl -lpthread)
$(BUILD)/bench/gemm: bench/gemm.c $(STATIC) $(FLAGS_FILE)
	$(call msg,CC,$@)
	@mkdir -p $(@D)
	$(Q)$(CC) $(PROG_CFLAGS) -O3 -Ilib $(BENCH_GEMM_FLAGS) $< $(STATIC) $(BENCH_GEMM_LIBS) \
	    $(LDLIBS) -o $@

bench: $(BENCH_BIN)

# ---- MPI: data-parallel agave-train and agave-eval (optional) ------------------
# `make MPI=1` (or `make mpi`) also builds agave-train and agave-eval with MPI support into
# $(MPI_BUILD)/bin/ and bench/mpi/*.c into $(MPI_BUILD)/bench/: compiled with
# MPICC (Open MPI's mpicc, told to use $(CC)) and linked against the same static
# library, which has no MPI dependency. examples/common/dist_mpi.c takes the
# place of dist.c there. `make check-mpi` runs tests/mpi/*.sh, which start the
# programs under MPIRUN (as root Open MPI needs --allow-run-as-root; the tests
# run 2 ranks on any machine, hence --oversubscribe) and compare them with the
# plain build; it ends with "N passed, N failed" like `make check`.
MPI ?=
MPICC ?= mpicc
MPI_BUILD ?= build-mpi
MPIRUN ?= mpirun --oversubscribe$(if $(filter 0,$(shell id -u)), --allow-run-as-root)
MPI_COMMON_SRC := $(filter-out examples/common/dist.c,$(wildcard examples/common/*.c))
# agave-sample has nothing to share between ranks: only these two.
MPI_PROGRAMS := $(MPI_BUILD)/bin/agave-train $(MPI_BUILD)/bin/agave-eval
MPI_BENCH := $(patsubst bench/mpi/%.c,$(MPI_BUILD)/bench/%,$(wildcard bench/mpi/*.c))
MPI_TESTS := $(sort $(wildcard tests/mpi/*.sh))
.PHONY: mpi check-mpi

ifeq ($(MPI),1)
all: mpi
endif

mpi: | mpi-compiler
mpi: $(MPI_PROGRAMS) $(MPI_BENCH)

# A missing MPI says what to install instead of "mpicc: not found".
.PHONY: mpi-compiler
mpi-compiler:
	@command -v $(firstword $(MPICC)) >/dev/null 2>&1 || { echo "make: $(MPICC) not found: the \
	MPI build needs Open MPI (sh scripts/deps.sh mpi, or apt-get install libopenmpi-dev \
	openmpi-bin)" >&2; exit 1; }

$(MPI_BUILD)/bin/%: examples/%.c $(wildcard examples/*.h examples/common/*.h) \
    $(MPI_COMMON_SRC) $(STATIC) $(FLAGS_FILE)
	$(call msg,MPICC,$@)
	@mkdir -p $(@D)
	$(Q)OMPI_CC='$(CC)' $(MPICC) $(PROG_CFLAGS) -Iexamples $< $(MPI_COMMON_SRC) $(STATIC) \
	    $(LDLIBS) -o $@

$(MPI_BUILD)/bench/%: bench/mpi/%.c $(STATIC) $(FLAGS_FILE)
	$(call msg,MPICC,$@)
	@mkdir -p $(@D)
	$(Q)OMPI_CC='$(CC)' $(MPICC) $(PROG_CFLAGS) -O3 $< $(STATIC) $(LDLIBS) -o $@

check-mpi:
	@sh scripts/deps.sh mpi
	@$(MAKE) --no-print-directory lib programs mpi
	@AGAVE_BUILD='$(BUILD)' AGAVE_MPI_BUILD='$(MPI_BUILD)' MPIRUN='$(MPIRUN)' \
	    TEST_TIMEOUT='$(TEST_TIMEOUT)' VERBOSE='$(V)' sh scripts/run-tests.sh $(MPI_TESTS)

# ---- the demo -------------------------------------------------------------------
# Installs what is missing (Fashion-MNIST included), builds the programs, then
# trains the fashion configuration for DEMO_MINUTES minutes, evaluates it and
# draws samples into demo/ (scripts/demo.sh and docs/programs.md say more).
DEMO_MINUTES ?= 10
.PHONY: demo
demo:
	@sh scripts/deps.sh demo
	@$(MAKE) --no-print-directory programs
	@DEMO_MINUTES='$(DEMO_MINUTES)' AGAVE_BUILD='$(BUILD)' sh scripts/demo.sh

# ---- tests ----------------------------------------------------------------------
deps:
	@sh scripts/deps.sh check

# Runs every test program and shell test (scripts/run-tests.sh), all of them
# even after a failure, and ends with the line "N passed, N failed".
# The shell tests read the build through these variables.
TEST_TIMEOUT ?= 900
run-tests: lib tests programs man
	@AGAVE_BUILD='$(BUILD)' AGAVE_SAN='$(SAN)' AGAVE_CC='$(CC)' MAKE='$(MAKE)' \
	    TEST_TIMEOUT='$(TEST_TIMEOUT)' VERBOSE='$(V)' \
	    sh scripts/run-tests.sh $(TEST_BIN) $(SHELL_TESTS)

# The programs and scripts run-tests runs, for scripts/mutate.sh.
.PHONY: print-tests
print-tests:
	@echo $(TEST_BIN) $(SHELL_TESTS)

# The dependencies first (a package installed now must be visible to the build).
check: deps
	@$(MAKE) --no-print-directory run-tests

# The whole suite (test programs, export check, consumer) with AddressSanitizer
# (LeakSanitizer included) and UndefinedBehaviorSanitizer, in its own build
# directory. -fno-sanitize-recover=all makes any UB report fatal: a test that
# triggers UB fails instead of printing and carrying on.
#  detect_leaks=1               a leak makes the test program exit non-zero (the
#                               default on x86-64, stated for clarity).
#  allocator_may_return_null=1  a huge malloc returns NULL, as in a normal build,
#                               so tests of AGAVE_ERR_NOMEM/LIMIT paths still work.
#  print_stacktrace=1           UBSan reports say where.
# No LeakSanitizer suppression is needed for OpenMP: libgomp's thread pool and
# OpenBLAS's buffers stay reachable from their globals at exit, so LSan does
# not report them (checked with 2 threads). If a report inside libgomp.so or
# libopenblas.so ever appears, add a suppression file and LSAN_OPTIONS=
# suppressions=... here, never a blanket detect_leaks=0.
# Options already in the environment come last, so they override these.
# float-cast-overflow: GCC's -fsanitize=undefined leaves out float-to-integer
# conversions out of the target's range (NaN to uint8_t among them), which are
# undefined behaviour all the same; GCC and clang both take the flag.
SAN_FLAGS := -fsanitize=address,undefined,float-cast-overflow -fno-sanitize-recover=all \
    -fno-omit-frame-pointer
SAN_OPT ?= -O1 -g
sanitize: deps
	@ASAN_OPTIONS="detect_leaks=1:allocator_may_return_null=1:$${ASAN_OPTIONS:-}" \
	UBSAN_OPTIONS="print_stacktrace=1:$${UBSAN_OPTIONS:-}" \
	    $(MAKE) --no-print-directory BUILD=build-san OPT='$(SAN_OPT)' SAN='$(SAN_FLAGS)' run-tests

# ---- valgrind memcheck (docs/reliability.md) ------------------------------------
# A subset of the suite (scripts/valgrind.sh says which and why) and the three
# programs under memcheck on the ordinary build: zero errors and zero
# definitely lost bytes, else the program fails. Ends with "N passed, N failed".
.PHONY: valgrind
valgrind:
	@sh scripts/deps.sh valgrind
	@$(MAKE) --no-print-directory lib tests programs
	@TEST_TIMEOUT='$(TEST_TIMEOUT)' VERBOSE='$(V)' sh scripts/valgrind.sh $(BUILD)

# ---- ThreadSanitizer (docs/reliability.md) --------------------------------------
# tests/test_threads.c (two threads, each with its own context and model,
# against the same two runs one after the other) built with the library in
# build-tsan/ under -fsanitize=thread; any reported race fails it
# (halt_on_error=1). Each context uses 1 thread there: libgomp is not
# instrumented, so its teams would look racy. No suppression file is needed:
# OpenBLAS is not instrumented either and runs single-threaded (lib/core/blas.c).
# The element-wise kernels are built without target_clones under TSan
# (lib/core/simd.h): the loader runs ifunc resolvers before the TSan runtime
# exists, and an instrumented resolver crashes the program at load.
TSAN_FLAGS := -fsanitize=thread -fno-omit-frame-pointer
.PHONY: tsan
tsan: deps
	@$(MAKE) --no-print-directory BUILD=build-tsan OPT='-O1 -g' SAN='$(TSAN_FLAGS)' \
	    build-tsan/tests/test_threads
	@TSAN_OPTIONS="halt_on_error=1:$${TSAN_OPTIONS:-}" AGAVE_BUILD=build-tsan \
	    TEST_TIMEOUT='$(TEST_TIMEOUT)' VERBOSE='$(V)' sh scripts/run-tests.sh build-tsan/tests/test_threads

# ---- fuzzing (docs/reliability.md) ----------------------------------------------
# libFuzzer harnesses fuzz/fuzz_*.c (every file there: IDX reader, CIFAR-10
# reader, checkpoint loader, configuration parser, and any harness added)
# built with clang against the static library compiled with
# -fsanitize=fuzzer-no-link,address,undefined in build-fuzz/, each run for
# FUZZ_SECONDS (or, with FUZZ_BUDGET=S, S seconds shared by all of them) on a
# corpus seeded by fuzz/make_corpus.c and fuzz/seeds/KIND/ (fuzz/run.sh). Any
# crash, leak, timeout, out-of-memory or sanitizer report fails the target and
# keeps the input in build-fuzz/fuzz/artifacts/. Then (unless FUZZ_COVERAGE=0)
# the corpus is replayed through a coverage build (build-cov/) and llvm-cov
# reports the line and branch coverage of the reader and loader sources.
# Only the static library is built there: clang does not link its ASan
# runtime into shared libraries, which the --no-undefined link would refuse.
# -Wno-pass-failed: clang warns that the sanitizers keep `omp simd` loops
# from vectorising; that costs nothing but speed in this build.
FUZZ_SECONDS ?= 60
FUZZ_BUDGET ?=
FUZZ_COVERAGE ?= 1
FUZZ_CC ?= clang
FUZZ_SAN := -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all \
    -fno-omit-frame-pointer
FUZZ_HARNESSES := $(patsubst fuzz/%.c,%,$(wildcard fuzz/fuzz_*.c))
.PHONY: fuzz fuzz-build fuzz-cov-build
fuzz:
	@sh scripts/deps.sh fuzz
	@$(MAKE) --no-print-directory BUILD=build-fuzz CC=$(FUZZ_CC) OPT='-O1 -g' \
	    CFLAGS='$(CFLAGS) -Wno-pass-failed' SAN='$(FUZZ_SAN)' fuzz-build
ifneq ($(FUZZ_COVERAGE),0)
	@$(MAKE) --no-print-directory BUILD=build-cov CC=$(FUZZ_CC) OPT='-O0 -g' \
	    CFLAGS='$(CFLAGS) -Wno-pass-failed' \
	    SAN='-fprofile-instr-generate -fcoverage-mapping' fuzz-cov-build
endif
	@FUZZ_COVERAGE='$(FUZZ_COVERAGE)' FUZZ_BUDGET='$(FUZZ_BUDGET)' \
	    sh fuzz/run.sh build-fuzz build-cov '$(FUZZ_SECONDS)' \
	    $(FUZZ_HARNESSES)

# (Run inside the sub-makes above, with BUILD, CC and SAN set.)
fuzz-build: $(STATIC) $(FUZZ_HARNESSES:%=$(BUILD)/fuzz/%) $(BUILD)/fuzz/make_corpus
fuzz-cov-build: $(STATIC) $(FUZZ_HARNESSES:%=$(BUILD)/fuzz/replay_%)

$(BUILD)/fuzz/fuzz_%: fuzz/fuzz_%.c $(wildcard fuzz/*.h) $(STATIC) $(FLAGS_FILE)
	$(call msg,CC,$@)
	@mkdir -p $(@D)
	$(Q)$(CC) $(PROG_CFLAGS) -Ilib -fsanitize=fuzzer $< $(STATIC) $(LDLIBS) -o $@

$(BUILD)/fuzz/replay_%: fuzz/%.c fuzz/replay.c $(wildcard fuzz/*.h) $(STATIC) $(FLAGS_FILE)
	$(call msg,CC,$@)
	@mkdir -p $(@D)
	$(Q)$(CC) $(PROG_CFLAGS) -Ilib $< fuzz/replay.c $(STATIC) $(LDLIBS) -o $@

# make_corpus writes JPEG seeds with stb_image_write, whose encoder shifts
# signed ints past their range (UBSan reports it); the seed writer is not
# under test, so that one check is off for it alone.
$(BUILD)/fuzz/make_corpus: fuzz/make_corpus.c $(wildcard fuzz/*.h) $(STATIC) $(FLAGS_FILE)
	$(call msg,CC,$@)
	@mkdir -p $(@D)
	$(Q)$(CC) $(PROG_CFLAGS) -Ilib $< $(STATIC) $(LDLIBS) -fno-sanitize=shift -o $@

# ---- ABI baseline ---------------------------------------------------------------
# abidw describes the exported functions and every type reachable from them
# (--exported-interfaces-only), restricted to the types of the public headers
# (--headers-dir include --drop-private-types). The other options keep the file
# independent of where and against what the tree was built (no corpus or
# compilation directory paths, no source line numbers, no DT_NEEDED list) and
# give types content-hashed ids, so that a real ABI change is a small,
# readable diff of the baseline.
ABI_BASELINE := abi/libagave.abi
ABIDW_FLAGS := --headers-dir include --drop-private-types --exported-interfaces-only \
    --no-corpus-path --no-comp-dir-path --no-show-locs --no-elf-needed --type-id-style hash
# abidiff exits non-zero on any difference (bit 4: changed, bit 8: incompatible).
# --harmless also reports what libabigail deems harmless, such as an enumerator
# appended to agave_status: abi-check fails on every change, compatible or not,
# so that the baseline always matches the library.
ABIDIFF_FLAGS := --no-show-locs --harmless

abi-dump: lib
	@sh scripts/abi.sh dump $(SHARED) $(ABI_BASELINE) $(ABIDW_FLAGS)

abi-check: lib
	@sh scripts/abi.sh check $(SHARED) $(ABI_BASELINE) $(ABIDW_FLAGS) -- $(ABIDIFF_FLAGS)

# ---- install -------------------------------------------------------------------------
# agave.pc: prefix, libdir, includedir and version filled in. libdir and
# includedir stay relative to ${prefix} when they are under it.
pc_path = $(if $(filter $(PREFIX)/%,$(1)),$${prefix}/$(patsubst $(PREFIX)/%,%,$(1)),$(1))

$(BUILD)/agave.pc: pkgconfig/agave.pc.in $(VERSION_H) FORCE
	@mkdir -p $(@D)
	$(Q)sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@LIBDIR@|$(call pc_path,$(LIBDIR))|g' \
	    -e 's|@INCLUDEDIR@|$(call pc_path,$(INCLUDEDIR))|g' -e 's|@VERSION@|$(VERSION)|g' \
	    $< > $@

# The CMake package (cmake/*.cmake.in) with the install paths and the static
# link line filled in, like agave.pc.
STATIC_DEPS = $(shell pkg-config --static --libs openblas zlib libjpeg libpng16 2>/dev/null) -lgomp -lm
cmake_subst = sed -e 's|@VERSION@|$(VERSION)|g' -e 's|@MAJOR@|$(MAJOR)|g' \
    -e 's|@LIBDIR@|$(LIBDIR)|g' -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|g' \
    -e 's|@STATIC_LIBS@|$(subst $(space),;,$(strip $(STATIC_DEPS)))|g'
space := $(subst ,, )
$(BUILD)/cmake/%.cmake: cmake/%.cmake.in $(VERSION_H) FORCE
	@mkdir -p $(@D)
	$(Q)$(cmake_subst) $< >$@

CMAKE_FILES := $(BUILD)/cmake/agaveConfig.cmake $(BUILD)/cmake/agaveConfigVersion.cmake
# README.md's links (docs/...) work in the installed copy too.
DOC_FILES := LICENSE README.md CHANGELOG.md
DOC_PAGES := $(wildcard docs/*.md)
DOC_RESULTS := $(wildcard docs/results/*)

# Only the two public headers are installed: nothing internal.
install: lib programs man $(BUILD)/agave.pc $(CMAKE_FILES)
	install -d '$(DESTDIR)$(INCLUDEDIR)' '$(DESTDIR)$(LIBDIR)' '$(DESTDIR)$(PKGCONFIGDIR)'
	install -m 644 include/agave.h include/agave_version.h '$(DESTDIR)$(INCLUDEDIR)/'
	install -m 755 $(SHARED) '$(DESTDIR)$(LIBDIR)/'
	ln -sf libagave.so.$(VERSION) '$(DESTDIR)$(LIBDIR)/$(SONAME)'
	ln -sf $(SONAME) '$(DESTDIR)$(LIBDIR)/libagave.so'
	install -m 644 $(STATIC) '$(DESTDIR)$(LIBDIR)/'
	install -m 644 $(BUILD)/agave.pc '$(DESTDIR)$(PKGCONFIGDIR)/agave.pc'
	install -d '$(DESTDIR)$(CMAKEDIR)'
	install -m 644 $(CMAKE_FILES) '$(DESTDIR)$(CMAKEDIR)/'
ifneq ($(PROGRAMS),)
	install -d '$(DESTDIR)$(BINDIR)' '$(DESTDIR)$(MANDIR)/man1'
	install -m 755 $(PROGRAMS) '$(DESTDIR)$(BINDIR)/'
	install -m 644 $(MAN1) '$(DESTDIR)$(MANDIR)/man1/'
endif
	install -d '$(DESTDIR)$(MANDIR)/man3' '$(DESTDIR)$(DOCDIR)/docs/results'
	install -m 644 $(MAN3) '$(DESTDIR)$(MANDIR)/man3/'
	install -m 644 $(DOC_FILES) '$(DESTDIR)$(DOCDIR)/'
	install -m 644 $(DOC_PAGES) '$(DESTDIR)$(DOCDIR)/docs/'
	install -m 644 $(DOC_RESULTS) '$(DESTDIR)$(DOCDIR)/docs/results/'
ifneq ($(PYTHONDIR),)
	install -d '$(DESTDIR)$(PYTHONDIR)/agave'
	install -m 644 python/agave/__init__.py '$(DESTDIR)$(PYTHONDIR)/agave/'
	printf '# Written by make install: the library this binding loads.\nLIBRARY = "%s"\n' \
	    '$(LIBDIR)/$(SONAME)' >'$(DESTDIR)$(PYTHONDIR)/agave/_paths.py'
else
	@echo "make install: no Python 3 found ($(PYTHON)): the Python binding is not installed"
endif

uninstall:
	rm -f '$(DESTDIR)$(INCLUDEDIR)/agave.h' '$(DESTDIR)$(INCLUDEDIR)/agave_version.h'
	rm -f '$(DESTDIR)$(LIBDIR)/libagave.so.$(VERSION)' '$(DESTDIR)$(LIBDIR)/$(SONAME)' \
	    '$(DESTDIR)$(LIBDIR)/libagave.so' '$(DESTDIR)$(LIBDIR)/libagave.a'
	rm -f '$(DESTDIR)$(PKGCONFIGDIR)/agave.pc'
	rm -f $(foreach f,$(notdir $(CMAKE_FILES)),'$(DESTDIR)$(CMAKEDIR)/$(f)')
	-rmdir '$(DESTDIR)$(CMAKEDIR)' 2>/dev/null
	rm -f $(foreach p,$(notdir $(PROGRAMS)),'$(DESTDIR)$(BINDIR)/$(p)')
	rm -f $(foreach m,$(notdir $(MAN1)),'$(DESTDIR)$(MANDIR)/man1/$(m)')
	rm -f $(foreach m,$(notdir $(MAN3)),'$(DESTDIR)$(MANDIR)/man3/$(m)')
	rm -f $(foreach f,$(notdir $(DOC_FILES)),'$(DESTDIR)$(DOCDIR)/$(f)')
	rm -f $(foreach f,$(notdir $(DOC_PAGES)),'$(DESTDIR)$(DOCDIR)/docs/$(f)')
	rm -f $(foreach f,$(notdir $(DOC_RESULTS)),'$(DESTDIR)$(DOCDIR)/docs/results/$(f)')
	-rmdir '$(DESTDIR)$(DOCDIR)/docs/results' '$(DESTDIR)$(DOCDIR)/docs' '$(DESTDIR)$(DOCDIR)' \
	    2>/dev/null
ifneq ($(PYTHONDIR),)
	rm -rf '$(DESTDIR)$(PYTHONDIR)/agave'
endif

clean:
	rm -rf build build-san build-tsan build-fuzz build-cov build-mpi $(BUILD) $(MPI_BUILD)
