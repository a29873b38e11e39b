# casesync -- one plain Makefile.
#   make            release build into build/
#   make run        install missing packages, build, run casesyncd on ./data
#   make test       install missing packages, build with ASan+UBSan, run every test
#   make SANITIZE=thread test   the same under TSan
CC      ?= cc
SANITIZE ?=
CFLAGS_BASE = $(PIC) -std=c11 -D_GNU_SOURCE -Wall -Wextra -Wno-unused-parameter -g -I. -pthread -DCASESYNC_SCHEMA_PATH='"$(CURDIR)/schema/casesync.json"'
LIBS    = -lcivetweb -llmdb -lcjson -lmsgpackc -lz -lcrypto -largon2 -lcsv -lnats -pthread
CLIBS   = -llmdb -lcjson -lcurl -lz -lcrypto -pthread
TLIBS   = $(LIBS) -lcurl

# Objects of executables are position-independent for PIE; those of the
# client library (and the schema validator it carries) -fPIC for the .so.
PIC = -fPIE

# CASESYNC_FAULTS: the test builds carry the disk-fault hooks (sync/fault.h);
# release binaries never do. The release build is hardened: fortified libc
# calls (_FORTIFY_SOURCE=2 needs -O2), stack canaries, PIE executables, and
# a GOT made read-only after relocation at load (full RELRO, BIND_NOW).
# tests/test_hardening.c checks the result with readelf.
HARDEN_CFLAGS = -D_FORTIFY_SOURCE=2 -fstack-protector-strong
HARDEN_LDFLAGS = -Wl,-z,relro,-z,now
ifeq ($(SANITIZE),)
  BUILD  = build
  CFLAGS = $(CFLAGS_BASE) -O2 $(HARDEN_CFLAGS)
  LDFLAGS_EXE = -pie $(HARDEN_LDFLAGS)
  LDFLAGS_SO  = $(HARDEN_LDFLAGS)
else ifeq ($(SANITIZE),thread)
  BUILD  = build/tsan
  CFLAGS = $(CFLAGS_BASE) -DCASESYNC_FAULTS -O1 -fsanitize=thread
else
  # float-cast-overflow is in clang's `undefined` (make fuzz) but not in gcc's.
  BUILD  = build/asan
  CFLAGS = $(CFLAGS_BASE) -DCASESYNC_FAULTS -O1 -fno-omit-frame-pointer \
           -fsanitize=address,undefined,float-cast-overflow -fno-sanitize-recover=undefined,float-cast-overflow
endif

SCHEMA_SRC = schema/schema.c schema/calendar.c
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

$(CLIENT_OBJ) $(SCHEMA_OBJ): PIC = -fPIC

$(BUILD)/%.o: %.c $(wildcard */*.h */*/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

# The version: VERSION here, the commit from git when there is one. The
# header is rewritten only when its text changes, so only the files that
# print it (server/main.c, server/routes.c, tools/casesync.c) rebuild.
VERSION = 1.0.0
$(BUILD)/version.h: FORCE
	@mkdir -p $(BUILD)
	@c=$$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown); \
	 t="#define CASESYNC_VERSION \"$(VERSION)\"\n#define CASESYNC_COMMIT \"$$c\""; \
	 if [ ! -f $@ ] || [ "$$(cat $@)" != "$$(printf "$$t")" ]; then printf "$$t\n" > $@; fi
$(BUILD)/server/main.o $(BUILD)/server/routes.o $(BUILD)/tools/casesync.o: $(BUILD)/version.h
$(BUILD)/server/main.o $(BUILD)/server/routes.o $(BUILD)/tools/casesync.o: CFLAGS += -include $(BUILD)/version.h
.PHONY: FORCE
FORCE:

# The shipped schema and calendar, built into the engine (schema/embedded.h).
# One generated source for every build flavour.
EMBED_C = build/gen/schema_embedded.c
$(EMBED_C): schema/casesync.json $(wildcard schema/calendar/*.json) scripts/embed-schema.sh
	@mkdir -p $(dir $@)
	sh scripts/embed-schema.sh $@
$(BUILD)/gen/schema_embedded.o: $(EMBED_C) schema/embedded.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/libcasesync-engine.a: $(SCHEMA_OBJ) $(SYNC_OBJ) $(BUILD)/gen/schema_embedded.o
	ar rcs $@ $^

# The supervisor console (console/): esbuild bundles it with its npm
# libraries (package-lock.json, installed by `npm ci`) into build/console/dist,
# and scripts/embed-console.mjs turns that folder into a C file the binary
# carries. Both are build products, never committed.
CONSOLE_SRC = $(wildcard console/*.js console/*.css console/*.html)
CONSOLE_OBJ = $(BUILD)/console/console_assets.o

node_modules/.package-lock.json: package.json package-lock.json
	@command -v npm >/dev/null || { echo "npm is missing: run make deps (scripts/deps.sh installs nodejs and npm)"; exit 1; }
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

build/console/dist/app.js: $(CONSOLE_SRC) node_modules/.package-lock.json
	@mkdir -p build/console/dist
	node_modules/.bin/esbuild console/main.js --bundle --minify --format=iife --target=chrome100,firefox100 \
	  --legal-comments=none --log-level=warning --outfile=$@
	cp console/index.html console/app.css build/console/dist/

build/console/console_assets.c: build/console/dist/app.js scripts/embed-console.mjs
	node scripts/embed-console.mjs build/console/dist $@

$(CONSOLE_OBJ): build/console/console_assets.c server/console.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/casesyncd: $(SERVER_OBJ) $(CONSOLE_OBJ) $(BUILD)/libcasesync-engine.a
	$(CC) $(CFLAGS) $(LDFLAGS_EXE) -o $@ $^ $(LIBS)

$(BUILD)/casesync: $(BUILD)/tools/casesync.o $(BUILD)/libcasesync-engine.a
	$(CC) $(CFLAGS) $(LDFLAGS_EXE) -o $@ $^ $(LIBS)

# The client library for apps: its own code plus the shared schema validator.
$(BUILD)/libcasesync.a: $(CLIENT_OBJ) $(SCHEMA_OBJ)
	ar rcs $@ $^

$(BUILD)/libcasesync.so: $(CLIENT_OBJ) $(SCHEMA_OBJ)
	$(CC) $(CFLAGS) -shared $(LDFLAGS_SO) -o $@ $^ $(CLIBS)

$(BUILD)/casesync-phone: $(PHONE_OBJ) $(BUILD)/libcasesync.a
	$(CC) $(CFLAGS) $(LDFLAGS_EXE) -o $@ $^ $(CLIBS)

$(BUILD)/casesync-sim: $(SIM_OBJ) $(BUILD)/libcasesync.a
	$(CC) $(CFLAGS) $(LDFLAGS_EXE) -o $@ $^ $(CLIBS)

# Each tests/fuzz/fuzz_<name>.c is a libFuzzer target. For `make test` it is
# compiled with the build's own compiler and sanitizers, renamed to
# fuzz_<name>(), and replays tests/fuzz/corpus/<name>/ and regressions/<name>/.
FUZZ_SRC        = $(filter-out tests/fuzz/fuzz_engine.c,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_NAMES      = $(patsubst tests/fuzz/fuzz_%.c,%,$(FUZZ_SRC))
EDGE_OBJ        = $(filter-out $(BUILD)/server/main.o,$(SERVER_OBJ))
FUZZ_REPLAY_OBJ = $(FUZZ_SRC:tests/fuzz/%.c=$(BUILD)/tests/fuzz/replay_%.o) $(BUILD)/tests/fuzz/fuzz_engine.o

# Tests link the engine (which carries the schema validator) and the client
# library's own objects, so client symbols must not clash with the engine's.
# The fuzz targets ride along for the corpus replay (tests/test_fuzz_replay.c),
# with the HTTP edge's pieces they call (an archive: only what they use).
$(BUILD)/casesync-tests: $(TEST_OBJ) $(FUZZ_REPLAY_OBJ) $(CLIENT_OBJ) $(BUILD)/libcasesync-edge.a \
		$(BUILD)/libcasesync-engine.a
	$(CC) $(CFLAGS) -o $@ $^ $(TLIBS)

# ---- fuzzing (tests/fuzz/) -------------------------------------------------
$(BUILD)/libcasesync-edge.a: $(EDGE_OBJ) $(CONSOLE_OBJ)
	ar rcs $@ $^

$(BUILD)/tests/fuzz/replay_fuzz_%.o: tests/fuzz/fuzz_%.c tests/fuzz/fuzz.h $(wildcard */*.h */*/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -DLLVMFuzzerTestOneInput=fuzz_$* -c $< -o $@

$(BUILD)/tests/fuzz/fuzz_engine.o: tests/fuzz/fuzz.h
$(BUILD)/tests/test_fuzz_replay.o: tests/fuzz/fuzz.h
$(BUILD)/tests/test_fuzz_replay.o: CFLAGS += -DCASESYNC_FUZZ_DIR='"$(CURDIR)/tests/fuzz"'
$(BUILD)/tests/test_console.o $(BUILD)/tests/test_storev2.o $(BUILD)/tests/test_openapi.o \
	$(BUILD)/tests/test_install.o $(BUILD)/tests/test_java.o: CFLAGS += -DCASESYNC_SRC_DIR='"$(CURDIR)"'

# `make fuzz` builds every target with clang (libFuzzer, ASan, UBSan) in
# build/fuzz/ -- every source recompiled there, never mixed with gcc objects --
# and runs each for FUZZ_SECONDS from its seeds. New inputs go to
# build/fuzz/corpus-<name>/, crashes to build/fuzz/crash-<name>/.
# FUZZ=name runs only some targets; FUZZ_ARGS adds libFuzzer flags (-jobs=2 ...).
FUZZ_SECONDS ?= 60
FUZZ        ?= $(FUZZ_NAMES)
FUZZ_ARGS   ?=
FUZZ_CC     ?= clang
FUZZ_BUILD   = build/fuzz
FUZZ_CFLAGS  = $(CFLAGS_BASE) -O1 -fno-omit-frame-pointer -fsanitize=address,undefined \
               -fno-sanitize-recover=undefined
FUZZ_LIB_SRC = $(SCHEMA_SRC) $(SYNC_SRC) $(filter-out server/main.c,$(SERVER_SRC)) tests/fuzz/fuzz_engine.c \
               build/gen/schema_embedded.c
FUZZ_LIB_OBJ = $(FUZZ_LIB_SRC:%.c=$(FUZZ_BUILD)/obj/%.o) $(FUZZ_BUILD)/obj/console_assets.o

$(FUZZ_BUILD)/obj/console_assets.o: build/console/console_assets.c server/console.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c $< -o $@

$(FUZZ_BUILD)/obj/%.o: %.c tests/fuzz/fuzz.h $(wildcard */*.h */*/*.h)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c $< -o $@

$(FUZZ_BUILD)/libfuzzcore.a: $(FUZZ_LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(FUZZ_BUILD)/fuzz_%: $(FUZZ_BUILD)/obj/tests/fuzz/fuzz_%.o $(FUZZ_BUILD)/libfuzzcore.a
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $^ $(LIBS)

fuzzdeps: deps
	@bash tests/fuzz/deps.sh

fuzzbins: $(FUZZ_NAMES:%=$(FUZZ_BUILD)/fuzz_%)

fuzz: fuzzdeps
	@$(MAKE) --no-print-directory fuzzbins
	@for t in $(FUZZ); do \
	  mkdir -p $(FUZZ_BUILD)/corpus-$$t $(FUZZ_BUILD)/crash-$$t; \
	  echo "== fuzz_$$t: $(FUZZ_SECONDS) s"; \
	  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  $(FUZZ_BUILD)/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	    -artifact_prefix=$(FUZZ_BUILD)/crash-$$t/ $(FUZZ_ARGS) \
	    $(FUZZ_BUILD)/corpus-$$t tests/fuzz/corpus/$$t >$(FUZZ_BUILD)/fuzz-$$t.log 2>&1; rc=$$?; \
	  grep -E '^#[0-9]+[[:space:]]+(INITED|DONE)|^stat::(number_of_executed_units|peak_rss)' $(FUZZ_BUILD)/fuzz-$$t.log; \
	  if [ $$rc -ne 0 ]; then tail -n 40 $(FUZZ_BUILD)/fuzz-$$t.log; \
	    echo "fuzz_$$t failed (exit $$rc): $(FUZZ_BUILD)/fuzz-$$t.log, reproducer in $(FUZZ_BUILD)/crash-$$t/"; \
	    exit 1; fi; \
	done

.PRECIOUS: $(FUZZ_BUILD)/obj/%.o
.PHONY: fuzz fuzzbins fuzzdeps

# docs/openapi.yaml is built into casesyncd (server/openapi.c, .incbin).
$(BUILD)/server/openapi.o $(FUZZ_BUILD)/obj/server/openapi.o: docs/openapi.yaml

# ---- install ---------------------------------------------------------------
# `make install PREFIX=/usr/local DESTDIR=` installs the release build:
#   bin/casesyncd, bin/casesync             the server and the operator's CLI
#   lib/libcasesync.{a,so}, include/casesync.h   the client library
#   share/casesync/schema/                  casesync.json and calendar/ (casesyncd
#                                           finds them from its own path)
#   share/man/man1/                         casesyncd.1, casesync.1 (from --help)
#   share/doc/casesync/                     protocol.md, openapi.yaml, operations.md, clients.md
#   lib/systemd/system/casesyncd.service    hardened unit (deploy/casesyncd.service)
#   SYSCONFDIR/casesync/casesyncd.conf      example config, never overwritten
PREFIX     ?= /usr/local
DESTDIR    ?=
SYSCONFDIR ?= $(PREFIX)/etc
install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include \
	  $(DESTDIR)$(PREFIX)/share/casesync/schema/calendar $(DESTDIR)$(PREFIX)/share/man/man1 \
	  $(DESTDIR)$(PREFIX)/share/doc/casesync $(DESTDIR)$(PREFIX)/lib/systemd/system \
	  $(DESTDIR)$(SYSCONFDIR)/casesync
	install -m 755 build/casesyncd build/casesync $(DESTDIR)$(PREFIX)/bin/
	install -m 644 build/libcasesync.a clients/c/casesync.h -t $(DESTDIR)$(PREFIX)/lib/
	mv -f $(DESTDIR)$(PREFIX)/lib/casesync.h $(DESTDIR)$(PREFIX)/include/casesync.h
	install -m 755 build/libcasesync.so $(DESTDIR)$(PREFIX)/lib/
	install -m 644 schema/casesync.json $(DESTDIR)$(PREFIX)/share/casesync/schema/
	install -m 644 schema/calendar/*.json $(DESTDIR)$(PREFIX)/share/casesync/schema/calendar/
	install -m 644 docs/protocol.md docs/openapi.yaml docs/operations.md docs/clients.md \
	  $(DESTDIR)$(PREFIX)/share/doc/casesync/
	for b in casesyncd casesync; do \
	  { printf '.TH %s 1 "" "casesync $(VERSION)" "casesync"\n.SH NAME\n%s\n.SH SYNOPSIS\n.nf\n' "$$(echo $$b | tr a-z A-Z)" "$$b"; \
	    build/$$b --help | sed -e 's/\\/\\e/g' -e 's/^\./\\\&./'; printf '.fi\n'; } \
	    > $(DESTDIR)$(PREFIX)/share/man/man1/$$b.1; \
	done
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g' deploy/casesyncd.service \
	  > $(DESTDIR)$(PREFIX)/lib/systemd/system/casesyncd.service
	[ -e $(DESTDIR)$(SYSCONFDIR)/casesync/casesyncd.conf ] || \
	  install -m 640 deploy/casesyncd.conf $(DESTDIR)$(SYSCONFDIR)/casesync/casesyncd.conf
.PHONY: install

# ---- the Java binding (clients/java) ------------------------------------------
# build/java/classes: org.casesync.*; build/libcasesync_jni.so: casesync_jni.c
# over the release libcasesync.a (PIC objects). Debian's JDK (scripts/deps.sh).
JAVA_HOME ?= $(shell dirname $$(dirname $$(readlink -f $$(command -v javac) 2>/dev/null)) 2>/dev/null)
JAVA_SRC = $(wildcard clients/java/src/org/casesync/*.java)
JAVA_TEST_SRC = $(wildcard clients/java/test/org/casesync/*.java)
java: build/java/classes/.stamp build/libcasesync_jni.so
build/java/classes/.stamp: $(JAVA_SRC) $(JAVA_TEST_SRC)
	@mkdir -p build/java/classes
	javac -Xlint:all -Werror -d build/java/classes $(JAVA_SRC) $(JAVA_TEST_SRC)
	@touch $@
build/libcasesync_jni.so: clients/java/casesync_jni.c clients/c/casesync.h build/libcasesync.a
	$(CC) $(CFLAGS_BASE) -O2 -fPIC -shared $(HARDEN_LDFLAGS) -I$(JAVA_HOME)/include -I$(JAVA_HOME)/include/linux \
	  -o $@ clients/java/casesync_jni.c build/libcasesync.a $(CLIBS)
.PHONY: java

run: deps
	@$(MAKE) --no-print-directory all
	./build/casesyncd --data ./data --listen 127.0.0.1:8080

# The test binary starts build/asan/casesyncd itself; CASESYNC_BIN tells it where.
# The release binaries are built too: tests/test_hardening.c inspects them
# (CASESYNC_RELEASE_BIN).
test: deps
	@$(MAKE) --no-print-directory SANITIZE= all java
	@$(MAKE) --no-print-directory SANITIZE=address $(if $(filter thread,$(SANITIZE)),SANITIZE=thread) testbins
	@B=build/asan; [ "$(SANITIZE)" = thread ] && B=build/tsan; \
	 rm -rf $$B/captures && mkdir -p $$B/captures && \
	 CASESYNC_CAPTURE_DIR=$(CURDIR)/$$B/captures \
	 ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	 TSAN_OPTIONS=suppressions=$(CURDIR)/tests/tsan.supp \
	 CASESYNC_BIN=$$B CASESYNC_RELEASE_BIN=build $$B/casesync-tests $(T)

testbins: $(BINS) $(BUILD)/casesync-tests

# Load generator against a release casesyncd; prints a table, writes bench/results.json.
# It links the release libcasesync.a to time an initial sync through the client library.
bench: deps
	@$(MAKE) --no-print-directory all
	$(CC) $(CFLAGS_BASE) -O2 -o build/bench bench/bench.c bench/formats.c sync/jcs.c sync/valcodec.c build/libcasesync.a \
	  -llmdb -lcjson -lcurl -lz -largon2 -lcrypto -lmsgpackc -lm -pthread
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
