# The two commands a fresh machine needs: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint typecheck peers js browser bench soak fuzz clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/descant serve

lint: $(STAMP)
	$(BIN)/ruff check src tests
	$(BIN)/ruff format --check src tests

typecheck: $(STAMP)
	$(BIN)/mypy

# Peers the interop tests and the benchmark run against (Debian packages).
peers:
	@bash tools/install-prosody.sh
	@bash tools/install-ejabberd.sh

# Third-party JavaScript clients the WebSocket/BOSH tests drive (tests/js, Node.js 20.10+),
# installed exactly as package-lock.json says; again only when the lock file changes.
# Without node and npm the build goes on, and those tests skip with the reason.
JS_DIR   := tests/js
JS_STAMP := $(JS_DIR)/node_modules/.installed
ifeq ($(and $(shell command -v node 2>/dev/null),$(shell command -v npm 2>/dev/null)),)
js:
	@echo "js: node/npm not found; the JavaScript client tests will be skipped" >&2
else
js: $(JS_STAMP)
$(JS_STAMP): $(JS_DIR)/package-lock.json
	npm ci --prefix $(JS_DIR) --no-audit --no-fund
	touch $(JS_STAMP)
endif

# Chromium (Debian package) for the web client tests, driven by Playwright's Python package;
# without root the build goes on, and those tests skip with the reason.
browser:
	@bash tools/install-browser.sh

test: $(STAMP) lint typecheck peers js browser
	$(BIN)/pytest -q

# Load benchmark, Descant then Prosody, side by side (bench/README.md); never part of `test`.
# Writes bench/results/YYYY-MM-DD.md. BENCH_ARGS=--quick tries the rig in about a minute.
BENCH_STAMP := $(VENV)/.bench-installed
$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(BIN)/python -m pip install -q -e '.[bench]'
	touch $(BENCH_STAMP)

bench: $(STAMP) peers $(BENCH_STAMP)
	$(BIN)/python -m bench.run $(BENCH_ARGS)

# Soak: ten minutes of connections logging in, chatting, joining rooms and dropping, the
# server's RSS sampled; fails when memory grows after the warm-up or the server logs a
# traceback (bench/README.md). Never part of `test`. SOAK_ARGS="--minutes 2" to try it,
# SOAK_ARGS="--out FILE" to keep the result, SOAK_ARGS=--tracemalloc to find what grows.
soak: $(STAMP) $(BENCH_STAMP)
	$(BIN)/python -m bench.soak $(SOAK_ARGS)

# Longer fuzzing than `make test` does: the property tests with 5,000 examples each
# (fewer where every example derives keys), then every atheris target (tests/fuzz) for
# FUZZ_TIME seconds. Crashing inputs are written to build/fuzz/<target>/crash-*, new
# interesting ones to build/fuzz/<target>/corpus (docs/SECURITY.md, "Fuzzing").
FUZZ_TIME    ?= 120
FUZZ_TARGETS ?= parser jid sasl c2s_negotiation c2s_session
fuzz: $(STAMP)
	HYPOTHESIS_PROFILE=long $(BIN)/pytest -q tests/unit/test_parser_properties.py \
		tests/unit/test_sasl_properties.py
	@status=0; for t in $(FUZZ_TARGETS); do \
		mkdir -p build/fuzz/$$t/corpus; \
		echo "fuzz: $$t for $(FUZZ_TIME)s"; \
		$(BIN)/python -m tests.fuzz.run $$t -max_total_time=$(FUZZ_TIME) -timeout=60 \
			-max_len=4096 -artifact_prefix=build/fuzz/$$t/ \
			build/fuzz/$$t/corpus tests/fuzz/corpus/$$t 2>build/fuzz/$$t/log \
			|| { status=1; tail -40 build/fuzz/$$t/log; }; \
		grep -h "^Done\|^#.*DONE" build/fuzz/$$t/log || true; \
	done; exit $$status

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info $(JS_DIR)/node_modules
