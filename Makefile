# Set-up, tests and the MONAI Label server. A newcomer runs `make serve` and `make test`.
#
#   make venv                  create .venv (or reuse it) and install requirements.txt
#   make test                  run the test suite (PYTEST_ARGS="-k models -x" to narrow it)
#   make serve                 start the MONAI Label server on a working copy of sample-data/
#   make clean                 remove working copies, caches and build outputs (keeps .venv)
#
# GPU machines: make TORCH="torch==2.14.1 torchvision==0.29.1" venv   (on a fresh .venv)

SHELL := /bin/bash

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.seapeft-complete
# Installed before requirements.txt when .venv has no torch yet. The default is the small CPU wheel
# on this machine's disk; requirements.txt admits it and the CUDA 2.14.1 build alike.
TORCH ?= torch==2.13.0
PYTEST_ARGS ?=

APP := apps/seapeft
SAMPLE_DATA ?= sample-data
DATASTORE := .work/datastore
HOST ?= 127.0.0.1
PORT ?= 8000
SERVE_CONF ?= --conf models all

.PHONY: venv test serve clean

venv: $(STAMP)

# The stamp is written only after every install step succeeded; it is removed first so that a
# failed or interrupted run is retried next time. An existing .venv is reused, never recreated.
$(STAMP): requirements.txt pyproject.toml
	@rm -f $@
	@if ! $(PY) -m pip --version >/dev/null 2>&1; then \
		echo "Creating $(VENV) with $(PYTHON)"; \
		$(PYTHON) -m venv $(VENV); \
	fi
	@if $(PY) -c "import torch" >/dev/null 2>&1; then \
		echo "Keeping installed torch $$($(PY) -c 'import torch; print(torch.__version__)')"; \
	else \
		echo "Installing $(TORCH) first"; \
		$(PY) -m pip install $(TORCH); \
	fi
	@# keep the torch already installed: otherwise torchvision (pulled in by monai's extras) resolves to its
	@# newest release, which requires the CUDA torch 2.14.1 and replaces the CPU wheel
	$(PY) -m pip install -r requirements.txt "torch==$$($(PY) -c 'import torch; print(torch.__version__)')"
	@touch $@

test: venv
	$(PY) -m pytest -q $(PYTEST_ARGS)

serve: venv
	@if [ ! -d $(SAMPLE_DATA) ]; then \
		echo "$(SAMPLE_DATA)/ is missing: nothing to serve." >&2; \
		exit 1; \
	fi; \
	if [ ! -d $(DATASTORE) ]; then \
		echo "Copying $(SAMPLE_DATA)/ to the working copy $(DATASTORE)/ (the repository's copy is never written)"; \
		rm -rf $(DATASTORE).tmp && mkdir -p $(dir $(DATASTORE)) && cp -r $(SAMPLE_DATA) $(DATASTORE).tmp && mv $(DATASTORE).tmp $(DATASTORE); \
	else \
		echo "Reusing the working copy $(DATASTORE)/ (make clean starts over from $(SAMPLE_DATA)/)"; \
	fi; \
	echo "MONAI Label server: http://$(HOST):$(PORT)  (Ctrl-C stops it)"; \
	MONAI_LABEL_TRACKING_ENABLED=false \
	MONAILABEL_PYEXE="$(CURDIR)/$(PY)" \
	PYTHONPATH="$(CURDIR)$${PYTHONPATH:+:$$PYTHONPATH}" \
	$(VENV)/bin/monailabel start_server --app $(APP) --studies $(DATASTORE) \
		--host $(HOST) --port $(PORT) $(SERVE_CONF)

clean:
	rm -rf .work build dist *.egg-info .pytest_cache
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
