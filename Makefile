# Every target builds its own virtual environment first, so each works on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Most tests wait on a real `cdrecon serve`, a database or a browser, not on the CPU: three
# workers finish the suite in about half the time even on two cores.
TEST_WORKERS ?= 3

.PHONY: serve test test-compiled lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

serve: $(STAMP)
	$(BIN)/cdrecon serve

test: $(STAMP)
	$(BIN)/pytest -q -n $(TEST_WORKERS)

# The hot path compiled by mypyc (setup.py, pyproject's [tool.cdrecon] compiled) and the tests
# that call its modules directly, run against that build: a copy of the tree built in place, so
# the editable install stays pure. PYTHONPATH makes any `cdrecon` process a test starts run it
# too. On SQLite only: no compiled code differs by database, and CI's time is short.
COMPILED_DIR ?= build/test-compiled
COMPILED_TESTS ?= tests/parsers/test_framing.py tests/parsers/test_syslog.py \
	tests/parsers/test_pexip.py tests/cdr/test_assembly.py tests/cdr/test_deriving.py \
	tests/ingest/test_writer.py -m 'not postgres'
define ASSERT_COMPILED
import importlib, tomllib
paths = tomllib.load(open("pyproject.toml", "rb"))["tool"]["cdrecon"]["compiled"]
names = [path.removesuffix(".py").replace("/", ".") for path in paths]
pure = [name for name in names if str(importlib.import_module(name).__file__).endswith(".py")]
assert not pure, f"not compiled: {pure}"
print(f"{len(names)} modules compiled")
endef
export ASSERT_COMPILED

test-compiled: $(STAMP)
	rm -rf $(COMPILED_DIR) && mkdir -p $(COMPILED_DIR)
	tar -c --exclude=__pycache__ --exclude='*.so' --exclude=bench/out \
		setup.py pyproject.toml README.md alembic.ini app parsers migrations bench tests \
		| tar -x -C $(COMPILED_DIR)
	cd $(COMPILED_DIR) && $(abspath $(BIN))/python setup.py --quiet build_ext --inplace
	cd $(COMPILED_DIR) && PYTHONPATH=$$PWD $(abspath $(BIN))/python -c "$$ASSERT_COMPILED"
	cd $(COMPILED_DIR) && PYTHONPATH=$$PWD $(abspath $(BIN))/pytest -q -n $(TEST_WORKERS) \
		-p no:cacheprovider $(COMPILED_TESTS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python -m bench.ingest

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build
