# mtinfer build. `make help` lists the targets. Everything lands in build/ (variants in
# build/<variant>/), so sanitizer and broken-twin builds never mix objects with the main one.

BUILD    ?= build
CC       := clang
OPT      ?= -O2 -g
SAN      ?=
VARIANT  ?=
CPPFLAGS := -I. -Iinclude -Isrc -D_GNU_SOURCE -I/usr/include/x86_64-linux-gnu/openblas-pthread
WARN     := -Wall -Wextra -Werror -Wthread-safety -Wshadow -Wno-unused-parameter
CFLAGS   := -std=c11 $(OPT) $(WARN) -fPIC -pthread $(SAN) $(VARIANT)
LDLIBS   := -lopenblas -lcjson -lm -pthread

LIB_SRCS := $(wildcard src/base/*.c src/backend/cpu/*.c src/runtime/*.c src/model/*.c)
LIB_SRCS += $(wildcard src/batch/*.c)
LIB_OBJS := $(LIB_SRCS:%.c=$(BUILD)/obj/%.o)
# The CUDA backend, when nvcc is present (WITH_CUDA=0 leaves it out).
-include src/backend/cuda/cuda.mk
CLI_SRCS := $(wildcard tools/*.c)
CLI_OBJS := $(CLI_SRCS:%.c=$(BUILD)/obj/%.o)
TEST_SRCS := $(wildcard tests/*.c)
TEST_OBJS := $(TEST_SRCS:%.c=$(BUILD)/obj/%.o)

STATIC_LIB := $(BUILD)/lib/libmtinfer.a
SHARED_LIB := $(BUILD)/lib/libmtinfer.so
CLI        := $(BUILD)/bin/mtinfer
TESTS      := $(BUILD)/bin/mtinfer-tests

.PHONY: all lib cli tests deps test test-unit test-tsan test-asan test-broken test-gpu test-bench verify bench \
        check-format format clean help fuzz test-cli stress-ci

all: lib cli tests

help:
	@echo "make deps         install build/test dependencies (Debian, as root)"
	@echo "make              build the library (static+shared), the CLI and the tests"
	@echo "make bench        the main job: build, then 'mtinfer bench' on the default backend"
	@echo "make test         every test: unit, TSan, ASan+UBSan, broken twins, Spin models, format"
	@echo "make test-unit    unit and concurrency tests (cmocka) on the release build"
	@echo "make test-tsan    the tests under ThreadSanitizer"
	@echo "make test-asan    the tests under AddressSanitizer + UndefinedBehaviorSanitizer + leaks"
	@echo "make test-broken  each broken twin must make its targeted test fail"
	@echo "make test-gpu     the suite on the CUDA backend (needs a GPU)"
	@echo "make verify       Spin models and their broken twins"
	@echo "make test-cli     mtinfer model/run exit codes on good and bad model files"
	@echo "make fuzz         the model-loader fuzzer for FUZZ_SECONDS (default 60)"
	@echo "make stress-ci    bounded CPU 'mtinfer stress' under TSan and ASan+UBSan, faults, negative control"

lib: $(STATIC_LIB) $(SHARED_LIB)
cli: $(CLI)
tests: $(TESTS)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -MMD -MP -c $< -o $@

# The bench records what it was built from.
$(BUILD)/obj/tools/bench.o: CPPFLAGS += -DMTI_GIT_COMMIT=\"$(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)\" \
    '-DMTI_BUILD_FLAGS="$(CC) $(strip $(OPT) $(SAN) $(VARIANT))"'

$(STATIC_LIB): $(LIB_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(SHARED_LIB): $(LIB_OBJS)
	@mkdir -p $(dir $@)
	$(CC) -shared $(CFLAGS) -o $@ $^ $(LDLIBS)

$(CLI): $(CLI_OBJS) $(STATIC_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

$(TESTS): $(TEST_OBJS) $(STATIC_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $^ -lcmocka $(LDLIBS)

-include $(LIB_OBJS:.o=.d) $(CLI_OBJS:.o=.d) $(TEST_OBJS:.o=.d)

deps:
	bash scripts/install-deps.sh

# ---- the two README commands --------------------------------------------------------------
# The main job: every section on the default backend, PyTorch beside it when it can be had.
bench: cli
	bash scripts/install-peer.sh
	$(CLI) bench $(BENCH_ARGS)

test: test-unit test-tsan test-asan test-broken verify check-format test-cli fuzz stress-ci test-bench

# ---- test variants ------------------------------------------------------------------------
# cmocka runs the tests in one process; `timeout` turns a hang into a failure.
TEST_TIMEOUT ?= 1200
RUN_TESTS = timeout --signal=KILL $(TEST_TIMEOUT)

test-unit: tests
	$(RUN_TESTS) $(TESTS)

test-tsan:
	$(MAKE) --no-print-directory BUILD=build/tsan OPT="-O1 -g" SAN="-fsanitize=thread" tests
	# die_after_fork=0: test-fork.c forks a threaded process on purpose and the child then
	# starts a runtime of its own (the behaviour under test).
	TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 die_after_fork=0 suppressions=$(CURDIR)/tests/tsan.supp" \
	  MTI_TEST_SCALE=4 $(RUN_TESTS) build/tsan/bin/mtinfer-tests

test-asan:
	$(MAKE) --no-print-directory BUILD=build/asan OPT="-O1 -g -fno-omit-frame-pointer" \
	  SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined" tests
	ASAN_OPTIONS="detect_leaks=1 abort_on_error=1" UBSAN_OPTIONS="print_stacktrace=1" \
	  MTI_TEST_SCALE=4 $(RUN_TESTS) build/asan/bin/mtinfer-tests

# The same suite on the GPU (run on a machine with one): every test that does not read device
# memory from the host runs against the CUDA backend.
test-gpu: tests
	MTI_TEST_BACKEND=cuda $(RUN_TESTS) $(TESTS)

test-broken:
	bash tests/run-broken-twins.sh

# Issue 6's CI evidence: bounded `mtinfer stress` on the CPU (31 threads, churn, faults, ...)
# under TSan and under ASan+UBSan+leaks, and the negative control seen to fail.
stress-ci:
	bash scripts/stress-ci.sh

verify:
	bash verify/run.sh

check-format:
	@bad=$$(for f in $$(git ls-files '*.c' '*.h' '*.cu'); do [ -f "$$f" ] || continue; \
	  clang-format --dry-run -Werror "$$f" >/dev/null 2>&1 || echo "$$f"; done); \
	  if [ -n "$$bad" ]; then echo "clang-format would change (run 'make format'):"; \
	  echo "$$bad"; exit 1; fi; echo "format: ok"

format:
	clang-format -i $$(git ls-files '*.c' '*.h' '*.cu')

# The main job's smoke run: every bench section produces numbers (about a minute on 2 cores).
test-bench: cli
	bash tests/bench-smoke.sh $(CLI)

# ---- models: CLI exit codes, and the loader fuzzer (libFuzzer, bounded) -----------------------
test-cli: cli
	bash tests/test-model-cli.sh $(CLI)

FUZZ_SECONDS ?= 60
FUZZ_BUILD   := build/fuzz
fuzz:
	$(MAKE) --no-print-directory BUILD=$(FUZZ_BUILD) WITH_CUDA=0 OPT="-O1 -g" \
	  SAN="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined" lib
	mkdir -p $(FUZZ_BUILD)/bin
	$(CC) -Iinclude -Isrc -D_GNU_SOURCE -std=c11 -O1 -g \
	  -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
	  -o $(FUZZ_BUILD)/bin/fuzz-loader fuzz/fuzz-loader.c $(FUZZ_BUILD)/lib/libmtinfer.a \
	  -lopenblas -lcjson -lm -pthread
	mkdir -p $(FUZZ_BUILD)/corpus
	$(FUZZ_BUILD)/bin/fuzz-loader -max_total_time=$(FUZZ_SECONDS) -max_len=65536 -timeout=10 \
	  -rss_limit_mb=2048 $(FUZZ_BUILD)/corpus fuzz/corpus

clean:
	rm -rf build
