# lessoncast: two commands on a fresh Debian/Ubuntu machine.
#   make run   installs what is missing and starts lessoncast on its embedded defaults
#   make test  installs the same and runs the whole test suite
#   make demo  (with `make run` going in another terminal) builds a demo county and runs a simulated fleet on it
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
# command:package pairs; a command that is missing has its package installed with apt-get.
SYSTEM_DEPS := ffmpeg:ffmpeg ffprobe:ffmpeg mosquitto:mosquitto nginx:nginx espeak-ng:espeak-ng wrk:wrk \
               node:nodejs npm:npm chromium:chromium
# The console's browser tests need Chinese glyphs; fc-list finds the font when it is installed.
FONT_DEPS := fonts-noto-cjk
VENDOR := server/console/static/vendor
# The files of the npm packages the console serves (copied, never committed; nothing comes from a CDN).
VENDOR_FILES := node_modules/htmx.org/dist/htmx.js node_modules/tus-js-client/dist/tus.js node_modules/echarts/dist/echarts.js
CATALOGUE := server/translations/zh_CN/LC_MESSAGES/messages
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test test-faults deps system-deps clean bench translations demo console-assets catalogue
.DEFAULT_GOAL := run

run: deps
	$(VENV)/bin/lessoncast run

# The suite mostly waits on subprocesses (Mosquitto, ffmpeg, agents, stacks), so it runs on more workers than cores.
# Each test file runs whole on one worker, so module fixtures are built once (see tests/README.md).
TEST_WORKERS ?= 4

test: deps
	$(VENV)/bin/pytest -q -n $(TEST_WORKERS) --dist loadfile

# The fault-injection scenarios at full size (make test runs their short versions); each prints its event account.
test-faults: deps
	FAULTS=full $(VENV)/bin/pytest -q -rA tests/e2e/faults

demo: deps
	$(VENV)/bin/lessoncast demo

bench: deps
	$(VENV)/bin/python bench/transcode.py
	$(VENV)/bin/python bench/agent_footprint.py
	$(VENV)/bin/python bench/ingest.py --ingests 2 --devices 60
	$(VENV)/bin/python bench/report.py
	$(VENV)/bin/python bench/fanout.py
	$(VENV)/bin/python bench/console.py

deps: system-deps $(STAMP) console-assets catalogue

console-assets: node_modules/.package-lock.json
	@mkdir -p $(VENDOR)
	@cp $(VENDOR_FILES) $(VENDOR)/

node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error

# The compiled catalogue is built from the .po at set-up, never committed.
catalogue: $(CATALOGUE).mo

$(CATALOGUE).mo: $(CATALOGUE).po $(STAMP)
	$(VENV)/bin/pybabel compile -d server/translations

system-deps:
	@missing=""; \
	for pair in $(SYSTEM_DEPS); do \
	  cmd=$${pair%%:*}; pkg=$${pair##*:}; \
	  if ! command -v $$cmd >/dev/null 2>&1 && [ ! -x /usr/sbin/$$cmd ]; then \
	    case " $$missing " in *" $$pkg "*) ;; *) missing="$$missing $$pkg";; esac; fi; \
	done; \
	if ! $(PYTHON) -c 'import venv, ensurepip' >/dev/null 2>&1; then missing="$$missing python3-venv"; fi; \
	if ! fc-list 2>/dev/null | grep -qi 'noto.*cjk' && \
	   [ ! -e /usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc ]; then \
	  missing="$$missing $(FONT_DEPS)"; fi; \
	if [ -n "$$missing" ]; then \
	  if command -v apt-get >/dev/null 2>&1; then \
	    echo "Installing system packages:$$missing"; \
	    $(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q $$missing; \
	  else \
	    echo "lessoncast needs these system packages, and apt-get is not available here:$$missing"; \
	    echo "Install them with your system's package manager, then run make again."; exit 1; \
	  fi; \
	fi

$(STAMP): pyproject.toml
	@[ -x $(VENV)/bin/python ] || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev]'
	@touch $(STAMP)

# After changing a translatable text: refresh the zh_CN catalogue, translate the new entries, then run this again.
translations: deps
	$(VENV)/bin/pybabel extract -F babel.cfg -k _ -k _l -k _t -o $(VENV)/messages.pot --no-location --omit-header .
	$(VENV)/bin/pybabel update -i $(VENV)/messages.pot -d server/translations -l zh_CN --no-fuzzy-matching
	$(VENV)/bin/pybabel compile -d server/translations

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache node_modules $(VENDOR)
