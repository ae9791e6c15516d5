# entropy-dashboard — `make demo` and `make test` work on a fresh Debian machine with Python 3.11.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# the oldest MLflow 3.x the product supports, in a venv of its own: the tests run its `mlflow server` too
MLFLOW_OLDEST := 3.0.0
OLD_MLFLOW    := .venv-mlflow-old
OLD_STAMP     := $(OLD_MLFLOW)/.installed-$(MLFLOW_OLDEST)
PORT   ?= 8501
HOST   ?= 127.0.0.1

.PHONY: install mlflow-oldest system-deps demo test bench lint clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

# MLflow 3.0.0 declares sqlalchemy<3, but needs the pools SQLAlchemy 2.1 removed
$(OLD_STAMP):
	$(PYTHON) -m venv $(OLD_MLFLOW)
	$(OLD_MLFLOW)/bin/pip install --quiet "mlflow==$(MLFLOW_OLDEST)" "sqlalchemy<2.1"
	touch $(OLD_STAMP)

mlflow-oldest: $(OLD_STAMP)

# Debian packages the tests need: a PostgreSQL server and headless Chromium (installed only when missing).
system-deps:
	@need=""; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need="$$need postgresql"; \
	[ -x /usr/bin/chromium ] || need="$$need chromium"; \
	if [ -n "$$need" ]; then \
	  echo "installing Debian packages:$$need"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$need >/dev/null; \
	fi

demo: install
	$(BIN)/entropy-dash demo --port $(PORT) --host $(HOST)

test: install mlflow-oldest system-deps
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/pytest -q

bench: install
	$(BIN)/python bench/fit.py
	$(BIN)/python bench/backtest.py
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/ingest_file.py
	$(BIN)/python bench/dashboard.py
	$(BIN)/python bench/scale.py
	$(BIN)/python bench/tiny_runs.py --sizes 1000,10000
	$(BIN)/python bench/partition_pg.py --runs 100

lint: install
	$(BIN)/ruff check .
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) $(OLD_MLFLOW) *.egg-info .pytest_cache .ruff_cache demo-data entropy-dash.db*
