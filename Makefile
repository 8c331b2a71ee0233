# Sluice developer entry points. `make` (or `make help`) lists them.
#
# Pinned tool binaries (kube-apiserver, etcd, prometheus, controller-gen,
# helm) are built from source into $(TOOLS_BIN) (default bin/) by
# tools/tools.mk, or copied from the per-user tools cache (tools/README.md).

include tools/tools.mk

.DEFAULT_GOAL := help

GO ?= go
# -race needs cgo, hence a C compiler; `make test GOTEST_FLAGS="-count=1 -timeout 25m"`
# runs without one.
GOTEST_FLAGS ?= -race -count=1 -timeout 25m

CONTROLLER_GEN := $(TOOLS_BIN)/controller-gen
# The API package: source of the deepcopy code and the CRDs.
API_PKG := ./rollout/v1alpha1
CRD_DIR := crds
# The Helm chart reads copies of the CRDs, the controller's RBAC rules and
# the Grafana dashboard from its files/ (deploy/chart_test.go checks them).
CHART_DIR := deploy/helm/sluice
# Go files of the repository, tracked or not, minus git-ignored ones.
GO_FILES = $$(git ls-files --cached --others --exclude-standard '*.go')

.PHONY: help build generate test fmt vet check demo bench-peers

help: ## Show this help
	@echo 'Usage: make <target>'
	@echo
	@awk 'BEGIN {FS = ":.*## "} /^[a-z][a-z-]*:.*## / {printf "  %-10s %s\n", $$1, $$2}' $(firstword $(MAKEFILE_LIST))
	@printf '  %-10s %s\n' tools 'Build the pinned tool binaries into $(TOOLS_BIN), or copy them from the tools cache (tools/tools.mk)'
	@printf '  %-10s %s\n' peers 'Build the peers (Argo Rollouts, istiod) into $(TOOLS_BIN), for bench-peers'

build: ## Build bin/sluice
	$(GO) build -o bin/sluice ./cmd/sluice

# Of the pinned tools the demo needs Prometheus only: no need to wait for
# kube-apiserver. Two builds run side by side (a sub-make with -j2, unless
# make already has a -j): one go command for bin/sluice and bin/demo (they
# share most packages, which one command compiles once) and tools/build.sh
# for bin/prometheus. The two share no compiled package anyway (the tools
# are built with -trimpath and without cgo), so on two cores one keeps the
# CPUs busy while the other links. The first time, Prometheus comes from
# source (a few minutes; tools/build.sh says so), afterwards from bin/ or,
# in a fresh clone, from the per-user tools cache (tools/README.md). The
# demo cleans up after itself (examples/demo); it prints the dashboard's URL
# and a token at the start, and with KEEP=1 keeps everything running at the
# end until Ctrl-C (built, not go run, which exits 1 when interrupted:
# Ctrl-C is how KEEP=1 ends).
demo: ## Canary release of a gRPC service with sluice run: v2 promoted, failing v3 rolled back (KEEP=1: stay up at the end)
	@echo '>> make demo: building bin/sluice, bin/demo and bin/prometheus (the first time: minutes; then seconds)'
	@$(MAKE) --no-print-directory $(if $(filter -j%,$(MAKEFLAGS)),,-j2) demo-bins $(TOOLS_BIN)/prometheus
	bin/demo -sluice bin/sluice -prometheus $(TOOLS_BIN)/prometheus $(if $(KEEP),-keep)

# bin/sluice (as `make build`) and bin/demo, in one go command.
.PHONY: demo-bins
demo-bins:
	$(GO) build -o bin/ ./cmd/sluice ./examples/demo

# controller-gen writes zz_generated.deepcopy.go next to the types and one
# CRD per kind into $(CRD_DIR); old CRD files are removed first so a renamed
# kind leaves nothing behind. generateEmbeddedObjectMeta keeps the labels and
# annotations of spec.template.metadata (without it the API server prunes
# them). The trim step then drops field descriptions
# where they make the CRD too big for client-side `kubectl apply` (see
# crds/internal/trim). crds/generate_test.go fails when the committed output
# is stale; keep its arguments in line with these.
generate: $(CONTROLLER_GEN) ## Regenerate deepcopy code and CRDs (crds/) from the API types
	rm -f $(CRD_DIR)/sluice.dev_*.yaml
	$(CONTROLLER_GEN) object crd:generateEmbeddedObjectMeta=true paths=$(API_PKG) output:crd:dir=$(CRD_DIR)
	$(GO) run ./crds/internal/trim $(CRD_DIR)/sluice.dev_*.yaml
	$(CONTROLLER_GEN) rbac:roleName=sluice-controller paths=./kube/manager output:rbac:dir=$(CRD_DIR)/rbac
	$(GO) run ./crds/internal/bundle $(CRD_DIR)/kustomization.yaml $(CRD_DIR)/install.yaml
	rm -f $(CHART_DIR)/files/crds/sluice.dev_*.yaml
	cp $(CRD_DIR)/sluice.dev_*.yaml $(CHART_DIR)/files/crds/
	cp $(CRD_DIR)/rbac/role.yaml $(CHART_DIR)/files/rbac/role.yaml
	cp deploy/grafana/sluice.json $(CHART_DIR)/files/grafana/sluice.json

test: tools ## Run all tests, envtest included (builds the tools first)
	KUBEBUILDER_ASSETS=$(TOOLS_BIN) SLUICE_BIN_DIR=$(TOOLS_BIN) $(GO) test $(GOTEST_FLAGS) ./...

fmt: ## Format all Go code (gofmt -w)
	gofmt -w $(GO_FILES)

vet: ## Run go vet
	$(GO) vet ./...

check: ## Fail on unformatted Go code (gofmt -l), then go vet
	@out=$$(gofmt -l $(GO_FILES)); \
	if [ -n "$$out" ]; then echo 'gofmt needed (run make fmt):'; echo "$$out"; exit 1; fi
	$(GO) vet ./...

# Sluice measured side by side with Argo Rollouts and istiod
# (internal/peerbench, docs/performance.md "Peers"). Builds the peers first
# (tools/tools.mk `peers`, skipped when present); neither `test` nor `demo`
# does. Long: hours on two cores (one 1,000-Rollout run of each controller
# takes tens of minutes; the xDS benchmark about 20; push → traffic and
# SLO breach a few minutes, with Prometheus). BENCH_PEERS_FLAGS picks
# the benchmarks and repeats, e.g. BENCH_PEERS_FLAGS='-bench ControllerSameWork -count 1 -v'
# or BENCH_PEERS_FLAGS='-bench "PushToTraffic|SLOBreach" -benchtime 1x -count 5 -v';
# internal/peerbench's doc lists the PEERBENCH_* sizes.
BENCH_PEERS_FLAGS ?= -bench . -benchtime 1x -count 3 -v
bench-peers: $(TOOLS_BIN)/kube-apiserver $(TOOLS_BIN)/etcd $(TOOLS_BIN)/prometheus peers ## Measure Sluice against Argo Rollouts and istiod (builds them first)
	KUBEBUILDER_ASSETS=$(TOOLS_BIN) SLUICE_BIN_DIR=$(TOOLS_BIN) $(GO) test -run '^$$' $(BENCH_PEERS_FLAGS) -timeout 6h ./internal/peerbench/
