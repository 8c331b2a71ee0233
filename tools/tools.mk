# tools/tools.mk — pinned test/dev binaries built from the Go module proxy.
#
# Included by the top-level Makefile (`include tools/tools.mk`), or usable on
# its own from the repo root: `make -f tools/tools.mk tools`.
#
# Each tool is its own Go module under tools/<name>/ (their dependency graphs
# clash), pinned by that module's go.mod + go.sum. A binary is built only when
# it is missing or older than its module's go.mod/go.sum (and main.go,
# plugins.yml where there is one), so bumping a version rebuilds it.
# tools/build.sh holds the recipes; it first looks in a per-user cache of
# tool binaries keyed by a hash of the module and the recipe
# (${XDG_CACHE_HOME:-~/.cache}/sluice/tools; SLUICE_TOOLS_CACHE=DIR moves it,
# SLUICE_TOOLS_CACHE=off turns it off), so another clone, or CI starting
# from a fresh clone, copies instead of rebuilding. See tools/README.md.

# Directory of this file, captured before any other include changes
# MAKEFILE_LIST.
TOOLS_MK_DIR := $(patsubst %/,%,$(dir $(abspath $(lastword $(MAKEFILE_LIST)))))

TOOLS_BIN ?= $(CURDIR)/bin

# GOFLAGS, GOPROXY, GOCACHE, SLUICE_TOOLS_CACHE, ... come from the
# environment untouched. CGO is off like upstream's release builds of these
# tools (static binaries, no C toolchain needed); override with
# TOOLS_CGO_ENABLED=1. Strip symbol table and DWARF (as upstream release
# builds do): ~30% smaller, faster links; panics still print symbolized
# stacks. TOOLS_LDFLAGS= keeps them.
TOOLS_GO ?= go
TOOLS_CGO_ENABLED ?= 0
TOOLS_LDFLAGS ?= -s -w
TOOLS_BUILD = TOOLS_GO='$(TOOLS_GO)' TOOLS_CGO_ENABLED='$(TOOLS_CGO_ENABLED)' TOOLS_LDFLAGS='$(TOOLS_LDFLAGS)' $(TOOLS_MK_DIR)/build.sh

# tool_inputs: the files of a tool module whose change rebuilds its binary.
tool_inputs = $(wildcard $(addprefix $(TOOLS_MK_DIR)/$(1)/,go.mod go.sum main.go plugins.yml))

TOOLS_BINARIES := \
	$(TOOLS_BIN)/kube-apiserver \
	$(TOOLS_BIN)/etcd \
	$(TOOLS_BIN)/prometheus \
	$(TOOLS_BIN)/controller-gen \
	$(TOOLS_BIN)/helm

.PHONY: tools
tools: $(TOOLS_BINARIES)

# tools/build.sh says what it builds and why, or that it copies it from
# the cache; it writes the binary through a temporary file and a rename,
# and touches it so that it is newer than its inputs.
$(TOOLS_BIN)/kube-apiserver: $(call tool_inputs,kube-apiserver)
	@$(TOOLS_BUILD) kube-apiserver $@
$(TOOLS_BIN)/etcd: $(call tool_inputs,etcd)
	@$(TOOLS_BUILD) etcd $@
$(TOOLS_BIN)/prometheus: $(call tool_inputs,prometheus)
	@$(TOOLS_BUILD) prometheus $@
$(TOOLS_BIN)/controller-gen: $(call tool_inputs,controller-gen)
	@$(TOOLS_BUILD) controller-gen $@
$(TOOLS_BIN)/helm: $(call tool_inputs,helm)
	@$(TOOLS_BUILD) helm $@

# --- Peers: the products Sluice is measured against (docs/performance.md,
# "Peers"). Large builds (several minutes each), so they are not part of
# `tools` and neither `make test` nor `make demo` builds them: only
# `make peers` / `make bench-peers` do. Cached like the tools.

PEER_BINARIES := \
	$(TOOLS_BIN)/rollouts-controller \
	$(TOOLS_BIN)/pilot-discovery

.PHONY: peers
peers: $(PEER_BINARIES)

$(TOOLS_BIN)/rollouts-controller: $(call tool_inputs,argo-rollouts)
	@$(TOOLS_BUILD) argo-rollouts $@
$(TOOLS_BIN)/pilot-discovery: $(call tool_inputs,istiod)
	@$(TOOLS_BUILD) istiod $@
