# nlp-suite: the two commands of the README are `make demo` and `make test`; both bootstrap .venv.
SHELL := /bin/bash
VENV ?= .venv
PYTHON ?= $(shell command -v python3.11 || command -v python3)
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
SERVE ?= 1
PYTEST_ARGS ?=

export GRADIO_ANALYTICS_ENABLED := False
export HF_HUB_OFFLINE := 1
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS := 90

.PHONY: venv demo test lint serve bench clean help

help:
	@echo "make demo            create .venv, migrate, run ingest -> train -> score -> alerts -> recommend, serve the app"
	@echo "make demo SERVE=0    the same without serving the app"
	@echo "make test            create/update .venv and run the test suite"
	@echo "make serve           serve the Gradio app on 127.0.0.1:7860"
	@echo "make clean           remove var/ (database, models, sample data, Prefect home)"

# Reinstall only when the dependency list changes; plain pip (torch==2.13.0 comes from the local wheel).
$(STAMP): pyproject.toml
	@echo "==> Python environment: $(VENV) (from $(PYTHON))"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "==> pip install -e '.[dev]' (first time ~1-2 min)"
	@$(BIN)/python -m pip install --progress-bar off -q -e '.[dev]' 2>&1 | grep -v "is ignored" || true
	@$(BIN)/python -c "import nlp_suite, torch, prefect, gradio" || (echo "install failed" >&2; exit 1)
	@touch $(STAMP)

venv: $(STAMP)
	@echo "==> $(VENV) is up to date"

demo: venv
	@echo "==> applying database migrations"
	$(BIN)/nlp-suite db upgrade
	@echo "==> running the pipeline on the embedded sample data (Prefect local temporary server)"
	$(BIN)/nlp-suite demo $(if $(filter 0 no false,$(SERVE)),--no-serve,)

serve: venv
	$(BIN)/nlp-suite serve

lint: venv
	@echo "==> ruff (unused imports, undefined names)"
	$(BIN)/ruff check nlp_suite flows tests bench

test: venv lint
	@echo "==> running the test suite"
	$(BIN)/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf var
