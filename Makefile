# azr-verify: `make run` serves the API on the embedded default; `make test` runs the suite.
# Both do every set-up step on a fresh Debian machine (apt packages, venv, editable install).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
SANDBOX_IMAGE ?= azr-verify-sandbox:latest
SERVICE_IMAGE ?= azr-verify:latest
VERL_SPEC ?= verl==0.9.1
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: help setup system-deps venv run test lint typecheck bench sandbox-image service-image dockerd clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

system-deps: ## install the Debian packages the sandboxes and tests need (as root; chromium for the browser tests)
	@missing=""; \
	command -v bwrap >/dev/null || missing="$$missing bubblewrap"; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	command -v dockerd >/dev/null || missing="$$missing docker.io"; \
	command -v docker-compose >/dev/null || docker compose version >/dev/null 2>&1 || missing="$$missing docker-compose"; \
	command -v debootstrap >/dev/null || missing="$$missing debootstrap"; \
	command -v setpriv >/dev/null || missing="$$missing util-linux"; \
	$(PYTHON) -c 'import ctypes; ctypes.CDLL("libseccomp.so.2")' 2>/dev/null || missing="$$missing libseccomp2"; \
	[ -e /usr/include/x86_64-linux-gnu/asm/unistd_64.h ] || [ "$$(uname -m)" != x86_64 ] || missing="$$missing linux-libc-dev"; \
	$(PYTHON) -c 'import venv, ensurepip' 2>/dev/null || missing="$$missing python3-venv"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v chromedriver >/dev/null || missing="$$missing chromium-driver"; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q $$missing; \
	fi

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q "torch==2.13.0" || $(PIP) install -q torch
	$(PIP) install -q -e '.[service,trainer,dev]'
	# veRL's released code, for the tests that run its sandbox reward against our /run_code:
	# without its dependencies (ray, a pinned transformers...) and outside site-packages, so
	# nothing imports it by accident; tests load its reward_score/sandbox_fusion by path.
	$(PIP) install -q --no-deps --target $(VENV)/verl-nodeps "$(VERL_SPEC)"
	touch $@

venv: $(VENV)/.installed ## create the virtual environment and install the project

setup: system-deps venv ## everything `run` needs

run: setup ## serve the API on http://127.0.0.1:8000 (embedded mode, process sandboxes)
	$(VENV)/bin/azr-verify serve

dockerd: ## start dockerd in the background when none answers
	@docker info >/dev/null 2>&1 || { \
	  echo "starting dockerd"; \
	  (nohup dockerd >/tmp/azr-verify-dockerd.log 2>&1 &); \
	  for i in $$(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done; \
	  docker info >/dev/null 2>&1 || { echo "dockerd did not start; see /tmp/azr-verify-dockerd.log"; exit 1; }; }

sandbox-image: dockerd ## build the docker sandbox image (no-op when unchanged)
	bash sandbox_images/python/build.sh $(SANDBOX_IMAGE)

service-image: venv dockerd ## build the image docker-compose and Kubernetes run (no-op when unchanged)
	bash deploy/build-images.sh $(SERVICE_IMAGE)

# A component that is missing (bwrap, redis-server, dockerd, the images) fails the tests that
# need it; `AZR_VERIFY_ALLOW_SKIP=1 make test` skips them instead (tests/servers.py).
test: ## run the whole suite (real bwrap, redis-server, dockerd, compose); missing components fail it
	@$(MAKE) --no-print-directory system-deps dockerd sandbox-image service-image || { \
	  [ "$$AZR_VERIFY_ALLOW_SKIP" = 1 ] && \
	  echo "make test: set-up incomplete; tests needing what is missing will skip (AZR_VERIFY_ALLOW_SKIP=1)"; }
	@$(MAKE) --no-print-directory venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports --no-cache
	@$(MAKE) --no-print-directory typecheck
	$(VENV)/bin/pytest

# mypy checks the packages under the names they are imported by (azr_verify.service, ...): the
# editable install maps those names with an import hook mypy cannot see, so a directory of
# links gives it the same view (without it every cross-module import would be unchecked Any).
MYPY_VIEW := .mypy-view
typecheck: venv ## mypy over azr_verify.service, .client and .trainer_adapter as they are imported
	@rm -rf $(MYPY_VIEW) && mkdir -p $(MYPY_VIEW)/azr_verify && touch $(MYPY_VIEW)/azr_verify/__init__.py
	@for package in service client trainer_adapter; do ln -s ../../$$package $(MYPY_VIEW)/azr_verify/$$package; done
	cd $(MYPY_VIEW) && ../$(VENV)/bin/mypy --config-file ../pyproject.toml --cache-dir ../.mypy_cache -p azr_verify

lint: venv ## ruff, the import contracts (pyproject.toml [tool.importlinter]) and mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports --no-cache
	@$(MAKE) --no-print-directory typecheck

bench: setup ## engine vs naive subprocess baseline
	$(VENV)/bin/azr-verify bench

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache $(MYPY_VIEW) .ruff_cache .pytest_cache .import_linter_cache
