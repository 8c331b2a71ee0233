# tools/tools.mk — pinned test/dev binaries built from the Go module proxy.
#
# Included by the top-level Makefile (`include tools/tools.mk`), or usable on
# its own from the repo root: `make -f tools/tools.mk tools`.
#
# Each tool is its own Go module under tools/<name>/ (their dependency graphs
# clash), pinned by that module's go.mod + go.sum. A binary is built only when
# it is missing or older than its module's go.mod/go.sum, so bumping a version
# rebuilds it. See tools/README.md.

# Directory of this file, captured before any other include changes
# MAKEFILE_LIST.
TOOLS_MK_DIR := $(patsubst %/,%,$(dir $(abspath $(lastword $(MAKEFILE_LIST)))))

TOOLS_BIN ?= $(CURDIR)/bin

# GOFLAGS, GOPROXY, GOCACHE, ... come from the environment untouched.
# GOWORK=off: each tool module is built on its own even if the repo grows a
# go.work. CGO is off like upstream's release builds of these tools (static
# binaries, no C toolchain needed); override with TOOLS_CGO_ENABLED=1.
TOOLS_GO ?= go
TOOLS_CGO_ENABLED ?= 0
TOOLS_GOENV = GOWORK=off CGO_ENABLED=$(TOOLS_CGO_ENABLED)
# Strip symbol table and DWARF (as upstream release builds do): ~30% smaller,
# faster links; panics still print symbolized stacks. TOOLS_LDFLAGS= keeps them.
TOOLS_LDFLAGS ?= -s -w

TOOLS_BINARIES := \
	$(TOOLS_BIN)/kube-apiserver \
	$(TOOLS_BIN)/etcd \
	$(TOOLS_BIN)/prometheus \
	$(TOOLS_BIN)/controller-gen \
	$(TOOLS_BIN)/helm

.PHONY: tools
tools: $(TOOLS_BINARIES)

# `go build -o` may leave an up-to-date binary untouched, hence the touch:
# the file must end up newer than go.mod/go.sum or make rebuilds every time.

# kube-apiserver (k8s.io/kubernetes). The version ldflags mirror upstream's
# hack/lib/version.sh so `--version` reports the pinned release.
$(TOOLS_BIN)/kube-apiserver: $(TOOLS_MK_DIR)/kube-apiserver/go.mod $(TOOLS_MK_DIR)/kube-apiserver/go.sum $(TOOLS_MK_DIR)/kube-apiserver/main.go
	@mkdir -p $(@D)
	cd $(TOOLS_MK_DIR)/kube-apiserver && \
	v=$$(GOWORK=off $(TOOLS_GO) list -m -f '{{.Version}}' k8s.io/kubernetes) && \
	mm=$${v#v} && major=$${mm%%.*} && rest=$${mm#*.} && minor=$${rest%%.*} && \
	ld="$(TOOLS_LDFLAGS)" && for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do \
		ld="$$ld -X $$p.gitVersion=$$v -X $$p.gitMajor=$$major -X $$p.gitMinor=$$minor -X $$p.gitTreeState=clean"; \
	done && \
	$(TOOLS_GOENV) $(TOOLS_GO) build -trimpath -ldflags "$$ld" -o $(abspath $@) .
	@touch $@

# etcd (go.etcd.io/etcd/server/v3); its version is a constant in etcd's api module.
$(TOOLS_BIN)/etcd: $(TOOLS_MK_DIR)/etcd/go.mod $(TOOLS_MK_DIR)/etcd/go.sum $(TOOLS_MK_DIR)/etcd/main.go
	@mkdir -p $(@D)
	cd $(TOOLS_MK_DIR)/etcd && \
	$(TOOLS_GOENV) $(TOOLS_GO) build -trimpath -ldflags "$(TOOLS_LDFLAGS)" -o $(abspath $@) .
	@touch $@

# prometheus (github.com/prometheus/prometheus/cmd/prometheus, a `tool` of the
# module). Module version v0.3XX.Y is Prometheus 3.XX.Y; pass it to --version.
# Built without the builtinassets tag: the web UI is not embedded (not needed).
$(TOOLS_BIN)/prometheus: $(TOOLS_MK_DIR)/prometheus/go.mod $(TOOLS_MK_DIR)/prometheus/go.sum
	@mkdir -p $(@D)
	cd $(TOOLS_MK_DIR)/prometheus && \
	v=$$(GOWORK=off $(TOOLS_GO) list -m -f '{{.Version}}' github.com/prometheus/prometheus) && \
	v=$$(echo "$$v" | sed 's/^v0\.\([0-9]\)0\{0,1\}\([0-9][0-9]*\)\./\1.\2./') && \
	$(TOOLS_GOENV) $(TOOLS_GO) build -trimpath \
		-ldflags "$(TOOLS_LDFLAGS) -X github.com/prometheus/common/version.Version=$$v" \
		-o $(abspath $@) github.com/prometheus/prometheus/cmd/prometheus
	@touch $@

# controller-gen (sigs.k8s.io/controller-tools/cmd/controller-gen, a `tool` of
# the module). Built from a dependency, so the version must be injected.
$(TOOLS_BIN)/controller-gen: $(TOOLS_MK_DIR)/controller-gen/go.mod $(TOOLS_MK_DIR)/controller-gen/go.sum
	@mkdir -p $(@D)
	cd $(TOOLS_MK_DIR)/controller-gen && \
	v=$$(GOWORK=off $(TOOLS_GO) list -m -f '{{.Version}}' sigs.k8s.io/controller-tools) && \
	$(TOOLS_GOENV) $(TOOLS_GO) build -trimpath \
		-ldflags "$(TOOLS_LDFLAGS) -X sigs.k8s.io/controller-tools/pkg/version.version=$$v" \
		-o $(abspath $@) sigs.k8s.io/controller-tools/cmd/controller-gen
	@touch $@

# helm (helm.sh/helm/v4/cmd/helm, a `tool` of the module), for the chart's
# tests (deploy/): lint, template. Built from a dependency, so the version
# must be injected (upstream's Makefile sets the same variable).
$(TOOLS_BIN)/helm: $(TOOLS_MK_DIR)/helm/go.mod $(TOOLS_MK_DIR)/helm/go.sum
	@mkdir -p $(@D)
	cd $(TOOLS_MK_DIR)/helm && \
	v=$$(GOWORK=off $(TOOLS_GO) list -m -f '{{.Version}}' helm.sh/helm/v4) && \
	$(TOOLS_GOENV) $(TOOLS_GO) build -trimpath \
		-ldflags "$(TOOLS_LDFLAGS) -X helm.sh/helm/v4/internal/version.version=$$v" \
		-o $(abspath $@) helm.sh/helm/v4/cmd/helm
	@touch $@

# --- Peers: the products Sluice is measured against (docs/performance.md,
# "Peers"). Large builds (several minutes each), so they are not part of
# `tools` and neither `make test` nor `make demo` builds them: only
# `make peers` / `make bench-peers` do.

PEER_BINARIES := \
	$(TOOLS_BIN)/rollouts-controller \
	$(TOOLS_BIN)/pilot-discovery

.PHONY: peers
peers: $(PEER_BINARIES)

# Argo Rollouts' controller (github.com/argoproj/argo-rollouts/cmd/rollouts-controller,
# a `tool` of the module). Version ldflags as upstream's Makefile sets them
# (without the leading v, which the binary adds).
$(TOOLS_BIN)/rollouts-controller: $(TOOLS_MK_DIR)/argo-rollouts/go.mod $(TOOLS_MK_DIR)/argo-rollouts/go.sum
	@mkdir -p $(@D)
	cd $(TOOLS_MK_DIR)/argo-rollouts && \
	v=$$(GOWORK=off $(TOOLS_GO) list -m -f '{{.Version}}' github.com/argoproj/argo-rollouts) && v=$${v#v} && \
	p=github.com/argoproj/argo-rollouts/utils/version && \
	$(TOOLS_GOENV) $(TOOLS_GO) build -trimpath \
		-ldflags "$(TOOLS_LDFLAGS) -X $$p.version=$$v -X $$p.gitTreeState=clean" \
		-o $(abspath $@) github.com/argoproj/argo-rollouts/cmd/rollouts-controller
	@touch $@

# istiod (istio.io/istio/pilot/cmd/pilot-discovery, a `tool` of the module),
# with upstream's build tags for it (STANDARD_TAGS in Makefile.core.mk). The
# module is a pseudo-version: the version reported is the tree's VERSION
# file plus "-dev" and the commit, as an upstream dev build says.
$(TOOLS_BIN)/pilot-discovery: $(TOOLS_MK_DIR)/istiod/go.mod $(TOOLS_MK_DIR)/istiod/go.sum
	@mkdir -p $(@D)
	cd $(TOOLS_MK_DIR)/istiod && \
	v=$$(GOWORK=off $(TOOLS_GO) list -m -f '{{.Version}}' istio.io/istio) && \
	d=$$(GOWORK=off $(TOOLS_GO) list -m -f '{{.Dir}}' istio.io/istio) && \
	rev=$${v##*-} && p=istio.io/istio/pkg/version && \
	$(TOOLS_GOENV) $(TOOLS_GO) build -trimpath -tags vtprotobuf,disable_pgv \
		-ldflags "$(TOOLS_LDFLAGS) -X $$p.buildVersion=$$(cat $$d/VERSION)-dev-$$rev -X $$p.buildGitRevision=$$rev -X $$p.buildStatus=Clean" \
		-o $(abspath $@) istio.io/istio/pilot/cmd/pilot-discovery
	@touch $@
