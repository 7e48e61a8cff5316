# libFuzzer targets (fuzz/fuzz_<name>.c) over a clang build of the library with ASan+UBSan and
# coverage instrumentation, in its own folder so it never mixes with the gcc builds.
#   make -f fuzz/fuzz.mk -j2                      # builds $(FUZZ_BUILD)/fuzz_<name> for every target
#   build-fuzzer/fuzz_gguf fuzz/corpus/gguf -max_total_time=60
# -O1 (sanitizers) leaves clang's loop vectoriser off, so "omp simd" loops would warn (-Wno-pass-failed).
# Needs clang and its fuzzer runtime (Debian: clang + libclang-rt-14-dev, or libclang-rt-dev).
# OpenMP comes from LLVM libomp (Debian libomp-dev); fuzz_short.sh runs the targets with OMP_NUM_THREADS=1.

FUZZ_CC    ?= clang
FUZZ_BUILD ?= build-fuzzer

FUZZ_PKG_CFLAGS := $(shell pkg-config --cflags jansson libpcre2-8 2>/dev/null)
FUZZ_PKG_LIBS   := $(shell pkg-config --libs jansson libpcre2-8 2>/dev/null || echo -ljansson -lpcre2-8)
FUZZ_SAN    := -fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZ_CFLAGS := -std=c11 -O1 -g -fno-omit-frame-pointer $(FUZZ_SAN) -Wall -Wextra -Wshadow \
               -Wno-unused-parameter -Wno-unknown-pragmas -Wno-pass-failed -fopenmp -D_GNU_SOURCE -Iinclude -Isrc \
               $(FUZZ_PKG_CFLAGS) -MMD -MP

# the library's sources, as the Makefile builds them (src/sources.mk: written once)
include src/sources.mk
FUZZ_LIB_SRC := $(VM_LIB_SRC)
# the server's HTTP side needs libmicrohttpd; its request parsing (fuzz_serve_request) does not
FUZZ_LIB_SRC := $(filter-out src/serve/http.c,$(FUZZ_LIB_SRC))
# FUZZ_EXCLUDE=src/x/y.c leaves a file out (a work-in-progress file clang cannot compile yet)
FUZZ_LIB_SRC := $(filter-out $(FUZZ_EXCLUDE),$(FUZZ_LIB_SRC))
FUZZ_LIB_OBJ := $(FUZZ_LIB_SRC:%.c=$(FUZZ_BUILD)/%.o)
FUZZ_SRC     := $(sort $(wildcard fuzz/fuzz_*.c))
FUZZ_BIN     := $(FUZZ_SRC:fuzz/%.c=$(FUZZ_BUILD)/%)

.PHONY: fuzz-all fuzz-clean
fuzz-all: $(FUZZ_BIN)

# library code: sanitizers + coverage, libFuzzer's main is added only at link time
$(FUZZ_BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c $< -o $@

$(FUZZ_BUILD)/libvmoer_fuzz.a: $(FUZZ_LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(FUZZ_BUILD)/fuzz_%: fuzz/fuzz_%.c fuzz/fuzz_common.h $(FUZZ_BUILD)/libvmoer_fuzz.a
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer $< $(FUZZ_BUILD)/libvmoer_fuzz.a -o $@ $(FUZZ_PKG_LIBS) -lm

fuzz-clean:
	rm -rf $(FUZZ_BUILD)

-include $(FUZZ_LIB_OBJ:.o=.d)
