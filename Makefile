# Two commands do everything on a fresh machine:
#   make book   set up, execute chapters that hold no outputs yet, generate the claims dashboard
#               and the reproducibility appendix, build the HTML (_build/html)
#   make test   set up, lint, make book, run the unit tests, the notebook regression tests
#               (nbval) and the browser test (every page in headless Chromium, network off)
# Others:
#   make html                  generate the pages and build the HTML, executing nothing
#   make browser               the browser test alone, on _build/html (screenshots: _build/browser)
#   make check-browser-fails   show that planted defects (a broken image, an unknown glue key...)
#                              turn the browser test red
#   make execute               re-execute every chapter (profile auto: full on a GPU, else quick)
#   make publish               the published book: every chapter in the long profile (hours on a
#                              2-core CPU; training runs are cached and resume), then the HTML
#   make seeds                 the seed-robustness appendix: every chapter at seeds 0-2 (quick)
#                              and 0-1 (long, where the budget allows), recorded in book/seeds.json
#   make chapter CH=01 ARGS="--profile quick --seed 3 -p lr=0.1"
#   make baselines             refresh the quick-profile baselines in tests/baselines/
#   make lint                  ruff (line length 100), also part of make test
#   make check-suite-fails     show that a wrong BN backward turns the suite red
#   make clean

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

export MPLBACKEND := Agg
export PYTHONHASHSEED := 0
export PYDEVD_DISABLE_FILE_VALIDATION := 1

# CIFAR-10 without a download: the shared JPEG copy, when it is there.
SHARED_CIFAR := $(abspath ../shared/data/cifar10-jpeg.zip)
ifneq ($(wildcard $(SHARED_CIFAR)),)
export BNUTILS_DATA ?= $(SHARED_CIFAR)
endif

.PHONY: setup book html pages browser test lint execute publish seeds chapter baselines \
        check-suite-fails check-browser-fails clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[book,test]'
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 > /dev/null
	touch $@

book: $(STAMP)
	$(BIN)/python -m bnutils execute --missing
	$(MAKE) --no-print-directory html
	@echo "open _build/html/index.html"

html: pages
	$(BIN)/jupyter-book build . --builder html --warningiserror --quiet

# book/claims.md, book/reproducibility.md, book/_findings.md: from the executed chapters
pages: $(STAMP)
	$(BIN)/python -m bnutils pages

browser: $(STAMP)
	$(BIN)/python tests/browser_check.py

# nbval re-executes every quick-profile baseline with a fresh cache, so nothing is reused;
# tests/test_browser.py opens the book that `make book` just built.
test: $(STAMP) lint book
	rm -rf .cache/test && mkdir -p .cache/test
	BNUTILS_CACHE=$(abspath .cache/test) $(BIN)/python -m pytest tests \
	    --nbval-lax --nbval-current-env --nbval-cell-timeout=1800 -q -rs

lint: $(STAMP)
	$(BIN)/ruff check bnutils tests

execute: $(STAMP)
	$(BIN)/python -m bnutils execute

publish: $(STAMP)
	$(BIN)/python -m bnutils execute --profile long
	$(MAKE) --no-print-directory html

# The long profile's VGG chapters (2 and 3) take hours per seed: seed 0 only for them.
seeds: $(STAMP)
	$(BIN)/python -m bnutils seeds --profile quick --seeds 0 1 2
	$(BIN)/python -m bnutils seeds 01 04 05 --profile long --seeds 0 1
	$(BIN)/python -m bnutils seeds 02 03 --profile long --seeds 0
	$(MAKE) --no-print-directory html

chapter: $(STAMP)
	$(BIN)/python -m bnutils run $(CH) $(ARGS)

baselines: $(STAMP)
	$(BIN)/python -m bnutils baselines

check-suite-fails: $(STAMP)
	$(BIN)/python tests/check_suite_fails.py

check-browser-fails: $(STAMP)
	$(BIN)/python tests/check_browser_fails.py

clean:
	rm -rf _build .cache
