# vmoer build. `make` builds build/libvmoer.a, build/libvmoer.so (soname libvmoer.so.MAJOR),
# build/vmoer, the tests and examples/; `make test` runs every test; `make check` is CI's command.
# `make SAN=1 ...` builds the AddressSanitizer+UndefinedBehaviorSanitizer variant in build-san/.
# BUILD=dir picks another build directory (parallel work trees, helpers). WERROR=1 turns warnings
# into errors (CI). `make install PREFIX=/usr/local` (DESTDIR too) installs the header, both
# libraries, vmoer.pc, the binary and the Python package (PYDIR).

CC      ?= cc
SAN     ?= 0
WERROR  ?= 0
PREFIX  ?= /usr/local
# The Python package (python/vmoer) goes to Debian's layout under the prefix (/usr/lib/python3/
# dist-packages for /usr), except under /usr/local, where Debian's python3 looks in
# /usr/local/lib/python3.X/dist-packages; PYDIR=... for another (lazy: python3 runs at install only).
PYDIR   ?= $(if $(filter /usr/local,$(PREFIX)),$(PREFIX)/lib/python3.$(shell python3 -c 'import sys; print(sys.version_info[1])')/dist-packages,$(PREFIX)/lib/python3/dist-packages)
ifeq ($(SAN),1)
BUILD   ?= build-san
OPT     := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
SANFLAGS := -fsanitize=address,undefined
else
BUILD   ?= build
OPT     := -O2 -g
endif
ifeq ($(WERROR),1)
OPT     += -Werror
endif

# MPI (Open MPI, `mpirun -np N vmoer fit|eval|demo`, src/util/dist.c): optional. MPI=1 builds it in,
# MPI=0 leaves it out; by default it is in when pkg-config finds ompi (install-deps.sh --tests
# installs it), except in the sanitizer build (Open MPI's own allocations would fill LeakSanitizer's
# report; that build checks the one-process code, which is the same code at N = 1).
ifeq ($(SAN),1)
MPI     ?= 0
else
MPI     ?= $(shell pkg-config --exists ompi 2>/dev/null && echo 1 || echo 0)
endif
ifeq ($(MPI),1)
MPI_CFLAGS := -DVM_MPI $(shell pkg-config --cflags ompi)
MPI_LIBS   := $(shell pkg-config --libs ompi)
endif

# libmicrohttpd: the HTTP server of `vmoer serve` (src/serve/)
PKG_DEPS   := jansson libpcre2-8 libmicrohttpd
PKG_CFLAGS := $(shell pkg-config --cflags $(PKG_DEPS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKG_DEPS) 2>/dev/null || echo -ljansson -lpcre2-8 -lmicrohttpd)

# -fPIC: one set of objects serves both libraries. -fvisibility=hidden: libvmoer.so exports only
# what include/vmoer.h marks VMOER_API (the static library and the tests see everything).
CFLAGS  += -std=c11 $(OPT) -fopenmp -Wall -Wextra -Wshadow -Wno-unused-parameter \
           -D_GNU_SOURCE -fPIC -fvisibility=hidden -Iinclude -Isrc $(PKG_CFLAGS) $(MPI_CFLAGS) -MMD -MP
LDLIBS  += $(PKG_LIBS) $(MPI_LIBS) -lm
LDFLAGS += -fopenmp $(SANFLAGS)

include src/sources.mk
LIB_SRC := $(VM_LIB_SRC)
CLI_SRC := $(sort $(wildcard src/cli/*.c))
TEST_SRC := $(sort $(wildcard tests/test_*.c))
EXAMPLE_SRC := $(sort $(wildcard examples/*.c))

LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)
CLI_OBJ  := $(CLI_SRC:%.c=$(BUILD)/%.o)
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
EXAMPLE_BIN := $(EXAMPLE_SRC:examples/%.c=$(BUILD)/examples/%)

SONAME   := libvmoer.so.$(VM_VERSION_MAJOR)
SO_FILE  := libvmoer.so.$(VM_VERSION)

.PHONY: all test check check-fast check-layers install clean
all: $(BUILD)/libvmoer.a $(BUILD)/libvmoer.so $(BUILD)/vmoer $(TEST_BIN) $(EXAMPLE_BIN)

# Objects depend on the flags they were compiled with (MPI=0/1, WERROR, CC): a change rebuilds them
# instead of mixing objects of two configurations in one build directory.
FLAGS_STAMP := $(BUILD)/.flags
$(shell mkdir -p $(BUILD) && (echo '$(CC) $(CFLAGS) $(LDLIBS)' | cmp -s - $(FLAGS_STAMP) || echo '$(CC) $(CFLAGS) $(LDLIBS)' > $(FLAGS_STAMP)))

$(BUILD)/%.o: %.c $(FLAGS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/libvmoer.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

# The real file carries the full version, the soname the major one, libvmoer.so is the link name.
$(BUILD)/$(SO_FILE): $(LIB_OBJ)
	$(CC) -shared -Wl,-soname,$(SONAME) -Wl,--no-undefined $(LDFLAGS) $^ -o $@ $(LDLIBS)
$(BUILD)/libvmoer.so: $(BUILD)/$(SO_FILE)
	ln -sf $(SO_FILE) $(BUILD)/$(SONAME)
	ln -sf $(SO_FILE) $@

$(BUILD)/vmoer: $(CLI_OBJ) $(BUILD)/libvmoer.a
	$(CC) $(LDFLAGS) $^ -o $@ $(LDLIBS)

$(BUILD)/tests/%: tests/%.c tests/test.h $(BUILD)/libvmoer.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $< $(BUILD)/libvmoer.a -o $@ $(LDFLAGS) $(LDLIBS)

# Examples see include/ only (no -Isrc): one that reaches for an internal header fails to build.
# tests/cli/install.sh builds them again against an installed copy through pkg-config.
$(BUILD)/examples/%: examples/%.c include/vmoer.h $(BUILD)/libvmoer.a
	@mkdir -p $(dir $@)
	$(CC) -std=c11 $(OPT) -Wall -Wextra -Iinclude $< $(BUILD)/libvmoer.a -o $@ $(LDFLAGS) $(LDLIBS)

# Every test binary and every tests/cli/*.sh script; the runner prints one "N passed, N failed" line.
# tests/run.sh NAME runs the tests whose name contains NAME.
test: all
	@BUILD=$(BUILD) sh tests/run.sh

# Every #include against the floors of src/LAYERS fails the build.
check-layers:
	@sh scripts/check_layers.sh

# The fast tier (under 2 minutes): the layer check and the quick tests (tests/fast.txt).
check-fast: check-layers all
	@BUILD=$(BUILD) sh tests/run.sh --fast

# The README's test command: the optimised suite, then the same suite under ASan+UBSan.
check: check-layers
	$(MAKE) test
	$(MAKE) SAN=1 test

# vmoer.pc is written at install time so its prefix is the one installed to.
install: $(BUILD)/libvmoer.a $(BUILD)/libvmoer.so $(BUILD)/vmoer
	install -d $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/bin
	install -m 644 include/vmoer.h $(DESTDIR)$(PREFIX)/include/
	install -m 644 $(BUILD)/libvmoer.a $(DESTDIR)$(PREFIX)/lib/
	install -m 755 $(BUILD)/$(SO_FILE) $(DESTDIR)$(PREFIX)/lib/
	ln -sf $(SO_FILE) $(DESTDIR)$(PREFIX)/lib/$(SONAME)
	ln -sf $(SO_FILE) $(DESTDIR)$(PREFIX)/lib/libvmoer.so
	install -m 755 $(BUILD)/vmoer $(DESTDIR)$(PREFIX)/bin/
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|$(VM_VERSION)|' -e 's|@DEPS@|$(PKG_DEPS)$(if $(filter 1,$(MPI)), ompi)|' \
	    vmoer.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/vmoer.pc
	install -d $(DESTDIR)$(PYDIR)/vmoer
	install -m 644 python/vmoer/*.py $(DESTDIR)$(PYDIR)/vmoer/
	printf '"""Written by make install: where the library of this copy is."""\nLIBDIR = "%s"\n' \
	    '$(PREFIX)/lib' > $(DESTDIR)$(PYDIR)/vmoer/_install.py

clean:
	rm -rf build build-san

-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d)
