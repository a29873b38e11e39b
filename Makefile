# casesync -- one plain Makefile.
#   make            release build into build/
#   make run        install missing packages, build, run casesyncd on ./data
#   make test       install missing packages, build with ASan+UBSan, run every test
#   make SANITIZE=thread test   the same under TSan
CC      ?= cc
SANITIZE ?=
CFLAGS_BASE = -fPIC -std=c11 -D_GNU_SOURCE -Wall -Wextra -Wno-unused-parameter -g -I. -pthread -DCASESYNC_SCHEMA_PATH='"$(CURDIR)/schema/casesync.json"'
LIBS    = -lcivetweb -llmdb -lcjson -lz -lcrypto -pthread
CLIBS   = -llmdb -lcjson -lcurl -lz -lcrypto -pthread
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
# clients/: the C client library (clients/c), the phone CLI and the fleet simulator.
CLIENT_SRC = $(wildcard clients/c/*.c)
PHONE_SRC  = $(wildcard clients/phone/*.c)
SIM_SRC    = $(wildcard clients/sim/*.c)

SCHEMA_OBJ = $(SCHEMA_SRC:%.c=$(BUILD)/%.o)
SYNC_OBJ   = $(SYNC_SRC:%.c=$(BUILD)/%.o)
SERVER_OBJ = $(SERVER_SRC:%.c=$(BUILD)/%.o)
TEST_OBJ   = $(TEST_SRC:%.c=$(BUILD)/%.o)
CLIENT_OBJ = $(CLIENT_SRC:%.c=$(BUILD)/%.o)
PHONE_OBJ  = $(PHONE_SRC:%.c=$(BUILD)/%.o)
SIM_OBJ    = $(SIM_SRC:%.c=$(BUILD)/%.o)

BINS = $(BUILD)/casesyncd $(BUILD)/casesync
ifneq ($(CLIENT_SRC),)
  BINS += $(BUILD)/libcasesync.a $(BUILD)/libcasesync.so
endif
ifneq ($(PHONE_SRC),)
  BINS += $(BUILD)/casesync-phone
endif
ifneq ($(SIM_SRC),)
  BINS += $(BUILD)/casesync-sim
endif

.PHONY: all deps run test testbins bench valgrind crashtest check clean format
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

# The client library for apps: its own code plus the shared schema validator.
$(BUILD)/libcasesync.a: $(CLIENT_OBJ) $(SCHEMA_OBJ)
	ar rcs $@ $^

$(BUILD)/libcasesync.so: $(CLIENT_OBJ) $(SCHEMA_OBJ)
	$(CC) $(CFLAGS) -shared -o $@ $^ $(CLIBS)

$(BUILD)/casesync-phone: $(PHONE_OBJ) $(BUILD)/libcasesync.a
	$(CC) $(CFLAGS) -o $@ $^ $(CLIBS)

$(BUILD)/casesync-sim: $(SIM_OBJ) $(BUILD)/libcasesync.a
	$(CC) $(CFLAGS) -o $@ $^ $(CLIBS)

# Tests link the engine (which carries the schema validator) and the client
# library's own objects, so client symbols must not clash with the engine's.
$(BUILD)/casesync-tests: $(TEST_OBJ) $(CLIENT_OBJ) $(BUILD)/libcasesync-engine.a
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

# Load generator against a release casesyncd; prints a table, writes bench/results.json.
bench: deps
	@$(MAKE) --no-print-directory all
	$(CC) $(CFLAGS_BASE) -O2 -o build/bench bench/bench.c -llmdb -lcjson -lcurl -pthread
	CASESYNC_BIN=build ./build/bench

# Unit tests under valgrind memcheck (a plain build: no sanitizer runtime).
valgrind: deps
	@$(MAKE) --no-print-directory build/casesync-tests
	CASESYNC_BIN=build valgrind -q --trace-children=yes --error-exitcode=3 --leak-check=full \
	  --errors-for-leak-kinds=definite build/casesync-tests test_schema.c

# The long form of the crash test: 60 kill -9 cycles under a push storm.
crashtest: deps
	@$(MAKE) --no-print-directory SANITIZE=address testbins
	CASESYNC_CRASH_CYCLES=$${CYCLES:-60} CASESYNC_BIN=build/asan build/asan/casesync-tests crash

format:
	clang-format -i */*.c */*.h

clean:
	rm -rf build
