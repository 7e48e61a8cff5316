# vmoer build. `make` builds build/libvmoer.a and build/vmoer; `make test` runs every test;
# `make SAN=1 ...` builds the AddressSanitizer+UndefinedBehaviorSanitizer variant in build-san/.
# BUILD=dir picks another build directory (parallel work trees, helpers).

CC      ?= cc
SAN     ?= 0
ifeq ($(SAN),1)
BUILD   ?= build-san
OPT     := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
SANFLAGS := -fsanitize=address,undefined
else
BUILD   ?= build
OPT     := -O2 -g
endif

# libmicrohttpd: the HTTP server of `vmoer serve` (src/serve/)
PKG_CFLAGS := $(shell pkg-config --cflags jansson libpcre2-8 libmicrohttpd 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs jansson libpcre2-8 libmicrohttpd 2>/dev/null || echo -ljansson -lpcre2-8 -lmicrohttpd)

CFLAGS  += -std=c11 $(OPT) -fopenmp -Wall -Wextra -Wshadow -Wno-unused-parameter \
           -D_GNU_SOURCE -Iinclude -Isrc $(PKG_CFLAGS) -MMD -MP
LDLIBS  += $(PKG_LIBS) -lm
LDFLAGS += -fopenmp $(SANFLAGS)

LIB_SRC := $(sort $(wildcard src/util/*.c src/gguf/*.c src/quant/*.c src/kernels/*.c \
             src/router/*.c src/model/*.c src/tokenizer/*.c src/convert/*.c src/data/*.c src/eval/*.c src/train/*.c \
             src/report/*.c src/gen/*.c src/serve/*.c src/demo/*.c))
CLI_SRC := $(sort $(wildcard src/cli/*.c))
TEST_SRC := $(sort $(wildcard tests/test_*.c))

LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/%.o)
CLI_OBJ  := $(CLI_SRC:%.c=$(BUILD)/%.o)
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)

.PHONY: all test check clean
all: $(BUILD)/libvmoer.a $(BUILD)/vmoer $(TEST_BIN)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/libvmoer.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/vmoer: $(CLI_OBJ) $(BUILD)/libvmoer.a
	$(CC) $(LDFLAGS) $^ -o $@ $(LDLIBS)

$(BUILD)/tests/%: tests/%.c tests/test.h $(BUILD)/libvmoer.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $< $(BUILD)/libvmoer.a -o $@ $(LDFLAGS) $(LDLIBS)

# Every test binary and every tests/cli/*.sh script; the runner prints one "N passed, N failed" line.
test: all
	@BUILD=$(BUILD) sh tests/run.sh

# The README's test command: the optimised suite, then the same suite under ASan+UBSan.
check:
	$(MAKE) test
	$(MAKE) SAN=1 test

clean:
	rm -rf build build-san

-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d)
