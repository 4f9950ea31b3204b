# Executable runbook notebooks — the front door.
# Every target sets itself up (virtual environment, pinned requirements, Jupyter kernel).
# `make help` lists the targets; README.md documents the same.

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
READY := $(VENV)/.ready
KERNELS := $(VENV)/.kernels

# make run / triage variables (see `make help`)
issue ?=
app ?=
app_url ?=
incident ?=
target ?=
scenario ?=
params ?=
fail_on ?=
allow_unknown ?=
apply ?=
confirm ?=
timeout ?=
path ?= reports
a ?=
b ?=
jobs ?=
replay ?=

q = '$(subst ','\'',$(1))'
# test workers: one more than the cores, as the tests wait on kernels and servers much of the time
TEST_WORKERS ?= $(shell $(PYTHON) -c 'import os; print((os.cpu_count() or 1) + 1)')
RUN_FLAGS = $(if $(app),--app $(call q,$(app))) \
	$(if $(app_url),--app-url $(call q,$(app_url))) \
	$(if $(incident),--incident $(call q,$(incident))) \
	$(if $(target),--target $(call q,$(target))) \
	$(if $(scenario),--scenario $(call q,$(scenario))) \
	$(foreach p,$(params),-p $(call q,$(p))) \
	$(if $(fail_on),--fail-on $(call q,$(fail_on))) \
	$(if $(filter true yes 1,$(allow_unknown)),--allow-unknown) \
	$(if $(filter true yes 1,$(apply)),--apply) \
	$(if $(confirm),--confirm $(call q,$(confirm))) \
	$(if $(timeout),--timeout $(call q,$(timeout)))

.DEFAULT_GOAL := help
.PHONY: help setup run list verify lab test test-fast review compare triage clean alerts serve demo-alert

help: ## Show this help
	@echo "Executable runbook notebooks. Usage: make <target> [var=value ...]"
	@echo
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  %-9s %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo
	@echo "Variables for run/triage: issue=NAME app=APP app_url=URL incident=ID"
	@echo "  target=demo|live|replay:PATH scenario=NAME params=\"k=v k2=v2\""
	@echo "  fail_on=never|warning|critical (unknown fails too; allow_unknown=true: it does not)"
	@echo "  apply=true confirm=DIGEST timeout=SECONDS"
	@echo "Examples: make run issue=health"
	@echo "          make run issue=memory scenario=oom"
	@echo "          make run issue=health app=my-app fail_on=critical"

$(READY): requirements.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "error: Python 3.11 or newer is required (PYTHON=$(PYTHON))" >&2; exit 2; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(PY) -m ipykernel install --sys-prefix --name opslib --display-name "Python (opslib)" >/dev/null
	@# the kernel (and JupyterLab) import opslib from this checkout
	$(PY) -c 'import site, sys; open(site.getsitepackages()[0] + "/opslib-checkout.pth", "w").write(sys.argv[1] + "\n")' "$(CURDIR)"
	@touch $@

# compile the log engine's kernels into numba's cache once per version of them (not in users' runs)
$(KERNELS): $(READY) opslib/logscan/_kernel.py
	$(PY) -c 'import opslib.logscan; opslib.logscan.warm()'
	@touch $@

setup: $(KERNELS) ## Create .venv, install pinned requirements, register the 'opslib' kernel, compile the log engine

run: $(KERNELS) ## Run a runbook: make run issue=health [app=… target=… params="k=v" …]
	@test -n "$(issue)" || { echo "error: say which runbook, e.g. make run issue=health (make list shows all)" >&2; exit 2; }
	$(PY) -m opslib run $(call q,$(issue)) $(RUN_FLAGS)

list: $(KERNELS) ## List every runbook with its parameters
	@$(PY) -m opslib list

serve: $(KERNELS) ## Receive Alertmanager webhooks and run the matching runbooks: make serve [listen=127.0.0.1:9095] [runbook_map=FILE]
	$(PY) -m opslib serve --listen $(call q,$(or $(listen),127.0.0.1:9095)) $(if $(runbook_map),--runbook-map $(call q,$(runbook_map)))

demo-alert: $(KERNELS) ## The alert flow on a demo incident, all local: make demo-alert [scenario=oom-loop|connection-leak]
	$(PY) -m opslib demo-alert $(if $(scenario),--scenario $(call q,$(scenario)))

alerts: $(KERNELS) ## Prometheus alert rules from the seed's thresholds: make alerts app=APP [params="thresholds={…}"]
	@test -n "$(app)" || { echo "error: say which app the rules watch, e.g. make alerts app=my-app" >&2; exit 2; }
	@mkdir -p reports/_alerts
	$(PY) -m opslib alerts rules --app $(call q,$(app)) $(foreach p,$(params),-p $(call q,$(p))) --out reports/_alerts/$(app).rules.yml

verify: $(KERNELS) ## Verify evidence: make verify [path=reports/<incident>/<run>] (default: all of reports/)
	$(PY) -m opslib verify $(call q,$(path))

review: $(KERNELS) ## Build the evidence site reports/index.html [replay=reports/<incident>/<run>: check its replay]
	$(PY) -m opslib review $(if $(replay),--check-replay $(call q,$(replay)))

compare: $(KERNELS) ## Compare two runs: make compare a=reports/<incident>/<run> b=reports/<incident>/<run>
	@test -n "$(a)" -a -n "$(b)" || { echo "error: say which runs, e.g. make compare a=reports/INC/RUN_A b=reports/INC/RUN_B" >&2; exit 2; }
	$(PY) -m opslib compare $(call q,$(a)) $(call q,$(b))

triage: $(KERNELS) ## Run every read-only runbook into one incident: make triage [app=… incident=… jobs=N]
	$(PY) -m opslib triage $(if $(app),--app $(call q,$(app))) \
		$(if $(app_url),--app-url $(call q,$(app_url))) \
		$(if $(incident),--incident $(call q,$(incident))) \
		$(if $(target),--target $(call q,$(target))) \
		$(if $(scenario),--scenario $(call q,$(scenario))) \
		$(if $(fail_on),--fail-on $(call q,$(fail_on))) \
		$(if $(filter true yes 1,$(allow_unknown)),--allow-unknown) \
		$(if $(timeout),--timeout $(call q,$(timeout))) \
		$(if $(jobs),--jobs $(call q,$(jobs)))

lab: $(KERNELS) ## Open JupyterLab on notebooks/ with the opslib kernel
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks

test: $(KERNELS) ## Run the whole test suite (installs PostgreSQL and Chromium if missing)
	@tests/system-deps.sh
	$(PY) -m pytest -n $(TEST_WORKERS) $(if $(CI),-p no:cacheprovider,) -q tests

test-fast: $(KERNELS) ## The quick loop: every test but papermill, browser and large-input ones
	@tests/system-deps.sh
	$(PY) -m pytest -n $(TEST_WORKERS) -q -m "not slow" tests

clean: ## Remove the virtual environment (reports/ is left alone)
	rm -rf $(VENV)
