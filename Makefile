# casesync -- one plain Makefile.
#   make            release build into build/
#   make run        install missing packages, build, run casesyncd on ./data
#   make test       install missing packages, build with ASan+UBSan, run every test
#   make SANITIZE=thread test   the same under TSan
CC      ?= cc
SANITIZE ?=
CFLAGS_BASE = -std=c11 -D_GNU_SOURCE -Wall -Wextra -Wno-unused-parameter -g -I. -pthread -DCASESYNC_SCHEMA_PATH='"$(CURDIR)/schema/casesync.json"'
LIBS    = -lcivetweb -llmdb -lcjson -lz -lcrypto -pthread
TLIBS   = $(LIBS) -lcurl

ifeq ($(SANITIZE),)
  BUILD  = build
  CFLAGS = $(CFLAGS_BASE) -O2
else ifeq ($(SANITIZE),thread)
  BUILD  = build/tsan
  CFLAGS = $(CFLAGS_BASE) -O1 -fsanitize=thread
else
  BUILD  = build/asan
  CFLAGS = $(CFLAGS_BASE) -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
endif

SCHEMA_SRC = schema/schema.c
SYNC_SRC   = $(wildcard sync/*.c)
SERVER_SRC = $(wildcard server/*.c)
TOOLS_SRC  = tools/casesync.c
TEST_SRC   = $(wildcard tests/*.c)

SCHEMA_OBJ = $(SCHEMA_SRC:%.c=$(BUILD)/%.o)
SYNC_OBJ   = $(SYNC_SRC:%.c=$(BUILD)/%.o)
SERVER_OBJ = $(SERVER_SRC:%.c=$(BUILD)/%.o)
TEST_OBJ   = $(TEST_SRC:%.c=$(BUILD)/%.o)

BINS = $(BUILD)/casesyncd $(BUILD)/casesync

.PHONY: all deps run test check clean format
all: $(BINS)

deps:
	@bash scripts/deps.sh

$(BUILD)/%.o: %.c $(wildcard */*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/libcasesync-engine.a: $(SCHEMA_OBJ) $(SYNC_OBJ)
	ar rcs $@ $^

$(BUILD)/casesyncd: $(SERVER_OBJ) $(BUILD)/libcasesync-engine.a
	$(CC) $(CFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/casesync: $(BUILD)/tools/casesync.o $(BUILD)/libcasesync-engine.a
	$(CC) $(CFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/casesync-tests: $(TEST_OBJ) $(BUILD)/libcasesync-engine.a
	$(CC) $(CFLAGS) -o $@ $^ $(TLIBS)

run: deps
	@$(MAKE) --no-print-directory all
	./build/casesyncd --data ./data --listen 127.0.0.1:8080

# The test binary starts build/asan/casesyncd itself; CASESYNC_BIN tells it where.
test: deps
	@$(MAKE) --no-print-directory SANITIZE=address $(if $(filter thread,$(SANITIZE)),SANITIZE=thread) testbins
	@B=build/asan; [ "$(SANITIZE)" = thread ] && B=build/tsan; \
	 ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	 TSAN_OPTIONS=suppressions=$(CURDIR)/tests/tsan.supp \
	 CASESYNC_BIN=$$B $$B/casesync-tests $(T)

testbins: $(BINS) $(BUILD)/casesync-tests

format:
	clang-format -i */*.c */*.h

clean:
	rm -rf build
