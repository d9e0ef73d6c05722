# Everything a fresh machine needs is installed by these targets: a virtualenv (.venv) and the real
# control-plane binaries (built once from pinned Go modules into ~/.cache/shardring).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip --disable-pip-version-check -q

.PHONY: all venv tools control-plane chart alerts lint test test-go test-unit test-fast cluster run demo bench bench-ring bench-offloop bench-e2e bench-limits bench-configmaps bench-sources bench-agent bench-pass bench-imports bench-ringpage bench-template bench-memory bench-plots bench-loadbalance bench-balance lock image clean

all: test

venv: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -e '.[test,bench,lint]'
	touch $@

tools:  ## build (first run) or find the control-plane binaries and ZooKeeper; print their versions
	@dir="$$(bash hack/build-tools.sh)" && echo "binaries: $$dir" && \
	  "$$dir/etcd" --version | head -1 && \
	  "$$dir/kube-apiserver" --version && \
	  "$$dir/consul" version | head -1 && \
	  "$$dir/prometheus" --version | head -1 && \
	  { [ ! -x "$$dir/kubectl" ] || "$$dir/kubectl" version --client | head -1; }
	@echo "zookeeper: $$(bash hack/zookeeper.sh 2>/dev/null)"
	@echo "gitops-health: $$(bash hack/gitops-health.sh)"
	@echo "helm: $$(bash hack/helm.sh)"
	@echo "monitoring CRDs: $$(bash hack/monitoring-crds.sh)"
	@echo "chromium: $$(bash hack/chromium.sh)"

control-plane:  ## build (first run) or find only what `make demo` and `make cluster` run: the control-plane binaries
	@bash hack/build-tools.sh

chart: tools  ## helm lint --strict and render the chart (the suite also installs it on a real API server)
	@helm="$$(bash hack/helm.sh)" && "$$helm" lint --strict charts/shardring-operator && \
	  "$$helm" template shardring charts/shardring-operator -n shardring-system >/dev/null && \
	  echo "chart: rendered"

alerts: tools  ## promtool check rules and promtool test rules for manifests/monitoring
	@promtool="$$(bash hack/build-tools.sh)/promtool" && \
	  "$$promtool" check rules manifests/monitoring/shardring.rules.yaml && \
	  cd tests/monitoring && "$$promtool" test rules shardring.rules.test.yaml

lint: venv  ## ruff, mypy (strict on the core and the worker), import-linter's layer contracts
	$(VENV)/bin/ruff check controller tests bench clients examples
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy --strict --python-version 3.10 --config-file clients/python/pyproject.toml clients/python/src
	$(VENV)/bin/lint-imports

test: venv tools lint test-go  ## lint, the Go client, then the whole suite on the real control plane
	$(PY) -m pytest

test-go:  ## the Go ring client (clients/go): go vet, go test -race, against the shared vectors
	cd clients/go && go vet ./... && go test -race -count=1 ./...

test-unit: venv  ## the pure core and the shell against fakes, in seconds, with no tool build
	$(PY) -m pytest tests/unit tests/shell

test-fast: venv tools  ## everything but the slow fault tests
	$(PY) -m pytest -m "not slow"

cluster: venv control-plane  ## a local control plane to experiment with; Ctrl-C tears it down
	$(PY) -m controller.testing.cluster

run: venv  ## the operator against $$KUBECONFIG and $$CONSUL_HTTP_ADDR (see `make cluster`)
	$(PY) -m controller run

demo: venv control-plane  ## the whole story in two minutes on a local control plane
	$(PY) -m controller.testing.demo

bench-ring: venv  ## ring engine benchmark -> bench/results/ring.json
	$(PY) bench/ring_bench.py

bench-e2e: venv tools  ## end-to-end benchmarks on the real control plane -> bench/results/e2e.json
	$(PY) bench/e2e_bench.py

bench-offloop: venv  ## loop stall of one big ring planned inline vs in the planning thread
	$(PY) bench/offloop_bench.py

bench-limits: venv tools  ## an oversized ring against a 512 MiB operator -> bench/results/limits.json
	$(PY) bench/limits_bench.py

bench-agent: venv tools  ## the ring agent and real Prometheus scrapers -> bench/results/agent.json
	$(PY) bench/agent_bench.py

bench-configmaps: venv tools  ## 10,000 unrelated ConfigMaps: the operator's CPU and RSS
	$(PY) bench/configmaps_bench.py

bench-pass: venv  ## one pass of an unchanged ring; OTHER=<checkout> measures another side by side
	$(PY) bench/pass_bench.py $(if $(OTHER),--other $(OTHER))

bench-imports: venv  ## what the operator weighs before serving any ring -> bench/results/imports.json
	$(PY) bench/imports_bench.py

bench-ringpage: venv  ## the ring page at 1,000 rings and for a big ring -> bench/results/ringpage.json
	$(PY) bench/ringpage_bench.py

bench-template: venv tools  ## propagation side by side with consul-template (built once) -> bench/results/template.json
	$(PY) bench/template_bench.py

bench-sources: venv tools  ## change -> ConfigMap latency for Consul, etcd and ZooKeeper
	$(PY) bench/sources_bench.py

bench-memory: venv tools  ## operator RSS against rings, in steps up to 2,000 -> bench/results/memory.json
	$(PY) bench/memory_bench.py

bench-loadbalance: venv  ## one rebalance by load, up to 100 members x 65,536 shards -> bench/results/loadbalance.json
	$(PY) bench/loadbalance_bench.py

bench-balance: venv tools  ## balancing by load on 4 real Prometheus servers: hashmod, count, load -> bench/results/balance.json
	$(PY) bench/balance_bench.py

bench-plots: venv  ## draw bench/results/*.png from the saved figures (matplotlib)
	$(PY) bench/plots.py

# The pictures last: each is drawn from the figures just saved.
bench: bench-ring bench-loadbalance bench-balance bench-offloop bench-pass bench-imports bench-ringpage bench-e2e bench-memory bench-limits bench-configmaps bench-sources bench-agent bench-template
	$(MAKE) bench-plots

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis .local

lock: venv  ## requirements.lock: the image's dependencies, exact versions and hashes
	$(PIP) install -q pip-tools
	$(VENV)/bin/pip-compile -q --generate-hashes --strip-extras --output-file requirements.lock pyproject.toml
	sed -i '/^--find-links/d; /^--index-url/d; /^--extra-index-url/d' requirements.lock

VERSION := $(shell sed -n 's/^__version__ = "\(.*\)"/\1/p' controller/__init__.py)
IMAGE   ?= shardring-operator:$(VERSION)

image:  ## the operator image, tagged IMAGE (needs a container engine; none runs on the CI machine)
	docker build -t $(IMAGE) .
