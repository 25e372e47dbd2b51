# catdog-report: make install, make site (PROFILE=full|quick|demo, ENGINE=mkdocs|zensical),
# make demo, make serve (build, serve on 127.0.0.1:8000, rebuild on every save), make test.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PROFILE ?= full
ENGINE ?= mkdocs
BUILD_ARGS ?=

.PHONY: install site demo serve test test-fast lint bench clean

$(BIN)/catdog-report: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e ".[test,zensical]"
	touch $@

# install also compiles the package's bytecode, as pip does at install: an editable install
# under PYTHONDONTWRITEBYTECODE would compile every module on every build
install: $(BIN)/catdog-report
	@$(BIN)/python -m compileall -q src

site: install
	$(BIN)/catdog-report build --profile $(PROFILE) --engine $(ENGINE) $(BUILD_ARGS)

demo: install
	$(BIN)/catdog-report build --profile demo --engine $(ENGINE) $(BUILD_ARGS)

serve: install
	$(BIN)/catdog-report serve --profile $(PROFILE) --engine $(ENGINE) $(BUILD_ARGS)

test: install
	$(BIN)/ruff check src tests content
	$(BIN)/python -m pytest -q

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow and not browser"

lint: install
	$(BIN)/ruff check src tests content

bench: install
	$(BIN)/python bench/bench.py

clean:
	rm -rf site build .cache site.tmp-* site.old-*
