# lessoncast: two commands on a fresh Debian/Ubuntu machine.
#   make run   installs what is missing and starts lessoncast on its embedded defaults
#   make test  installs the same and runs the whole test suite
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
# command:package pairs; a command that is missing has its package installed with apt-get.
SYSTEM_DEPS := ffmpeg:ffmpeg ffprobe:ffmpeg mosquitto:mosquitto nginx:nginx espeak-ng:espeak-ng
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test deps system-deps clean bench translations
.DEFAULT_GOAL := run

run: deps
	$(VENV)/bin/lessoncast run

test: deps
	$(VENV)/bin/pytest -q

bench: deps
	$(VENV)/bin/python bench/transcode.py
	$(VENV)/bin/python bench/agent_footprint.py
	$(VENV)/bin/python bench/ingest.py --ingests 2 --devices 60
	$(VENV)/bin/python bench/report.py

deps: system-deps $(STAMP)

system-deps:
	@missing=""; \
	for pair in $(SYSTEM_DEPS); do \
	  cmd=$${pair%%:*}; pkg=$${pair##*:}; \
	  if ! command -v $$cmd >/dev/null 2>&1 && [ ! -x /usr/sbin/$$cmd ]; then \
	    case " $$missing " in *" $$pkg "*) ;; *) missing="$$missing $$pkg";; esac; fi; \
	done; \
	if ! $(PYTHON) -c 'import venv, ensurepip' >/dev/null 2>&1; then missing="$$missing python3-venv"; fi; \
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
	rm -rf $(VENV) *.egg-info .pytest_cache
