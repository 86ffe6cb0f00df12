# The two commands a newcomer needs:
#   make run    serve the webhook on embedded defaults (local sqlite MLflow registry, self-signed certs)
#   make test   lint, type-check and run the whole test suite (real mlflow server, real TLS, real kube-apiserver)
# and README's tour: make demo (a local kube-apiserver with the webhook, the reconciler and a demo registry)

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cksum < pyproject.toml | cut -d' ' -f1)

.PHONY: run demo test lint unit integration e2e controlplane tools bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/modelpin serve

# The README's tour: a local control plane, the webhook, the reconciler and a demo registry, until Ctrl-C.
demo: $(STAMP) controlplane
	$(PY) -m webhook.tools.demo up

lint: $(STAMP)
	$(PY) -m ruff check webhook tests
	$(PY) -m ruff format --check webhook tests
	$(PY) -m mypy
	$(VENV)/bin/lint-imports

controlplane:
	bash hack/controlplane.sh

# helm and promtool for the chart, GitOps and alert tests (pinned in hack/tools-versions.env).
tools:
	bash hack/tools.sh

test: $(STAMP) lint controlplane tools
	$(PY) -m pytest -p no:cacheprovider -ra

unit: $(STAMP)
	$(PY) -m pytest -p no:cacheprovider tests/unit

integration: $(STAMP)
	$(PY) -m pytest -p no:cacheprovider tests/integration

e2e: $(STAMP) controlplane tools
	$(PY) -m pytest -p no:cacheprovider tests/e2e

bench: $(STAMP) controlplane
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	$(PY) -m tests.benchmarks.admission
	$(PY) -m tests.benchmarks.scale

clean:
	rm -rf $(VENV) modelpin-data modelpin-demo
