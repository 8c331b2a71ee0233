#!/usr/bin/env bash
# tools/build.sh TOOL OUT — put the pinned binary of tools/TOOL/ at OUT:
# copied from the per-user tools cache when it holds a binary built from the
# same inputs, else built from source through the Go module proxy (and then
# stored in the cache). tools/tools.mk calls it; see tools/README.md.
#
# Environment (tools.mk passes all of them):
#   TOOLS_GO            the go command (default go)
#   TOOLS_CGO_ENABLED   CGO_ENABLED of the build (default 0)
#   TOOLS_LDFLAGS       linker flags (default -s -w; empty keeps symbols)
#   SLUICE_TOOLS_CACHE  the cache directory, or "off" for no cache
#                       (default ${XDG_CACHE_HOME:-$HOME/.cache}/sluice/tools)
#
# The cache key is a hash of everything the binary is built from: the
# tool's module directory (go.mod, go.sum, main.go, ...), the recipe below
# (the text of its build_TOOL function and of gobuild), GOOS/GOARCH,
# CGO_ENABLED and the linker flags. Bumping a tool's version, or changing
# how it is built, changes the key. The Go toolchain's version is left out
# on purpose: a Go upgrade should not cost a quarter of an hour of tool
# builds, and the pinned modules decide what a tool does.
set -euo pipefail

tools_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TOOLS_GO=${TOOLS_GO:-go}
TOOLS_CGO_ENABLED=${TOOLS_CGO_ENABLED:-0}
TOOLS_LDFLAGS=${TOOLS_LDFLAGS--s -w}
# Each tool module is built on its own even if the repository grows a
# go.work.
export GOWORK=off

usage() {
	echo "usage: $0 TOOL OUT | $0 -key TOOL" >&2
	exit 2
}

# known TOOL fails, saying why, unless tools/TOOL/ is a tool module with a
# recipe here.
known() {
	if ! describe "$1"; then
		echo "$0: unknown tool \"$1\": no recipe (build_$1) in tools/build.sh" >&2
		exit 2
	fi
	if [ ! -f "$tools_dir/$1/go.mod" ]; then
		echo "$0: tool \"$1\": tools/$1/go.mod is missing" >&2
		exit 2
	fi
}

# modversion MODULE prints the version of MODULE that the tool's go.mod
# pins.
modversion() {
	"$TOOLS_GO" list -m -f '{{.Version}}' "$1"
}

# gobuild OUT LDFLAGS [ARGS...] runs go build the way every tool is built:
# no path of this machine in the binary, CGO as configured (off by
# default, like upstream's release builds: static, no C compiler needed).
gobuild() {
	local out=$1 ldflags=$2
	shift 2
	CGO_ENABLED=$TOOLS_CGO_ENABLED "$TOOLS_GO" build -trimpath -ldflags "$TOOLS_LDFLAGS $ldflags" -o "$out" "$@"
}

# --- The tools. For each: what it is and who needs it (printed before a
# build), the module whose version it reports, a rough cold build time on
# two idle cores, and build_TOOL OUT, run in tools/TOOL/.

describe() {
	case $1 in
	kube-apiserver)
		what="kube-apiserver" mod=k8s.io/kubernetes eta="about 6-7 min"
		why="envtest's API server, for the Kubernetes tests" ;;
	etcd)
		what="etcd" mod=go.etcd.io/etcd/server/v3 eta="about 1-2 min"
		why="envtest's storage, for the Kubernetes tests" ;;
	prometheus)
		what="Prometheus" mod=github.com/prometheus/prometheus eta="about 2-3 min"
		why="the demo and the analysis tests query it" ;;
	controller-gen)
		what="controller-gen" mod=sigs.k8s.io/controller-tools eta="about 1 min"
		why="make generate writes the CRDs with it" ;;
	helm)
		what="Helm" mod=helm.sh/helm/v4 eta="a few min"
		why="the Helm chart's tests" ;;
	argo-rollouts)
		what="Argo Rollouts' controller" mod=github.com/argoproj/argo-rollouts eta="several min"
		why="make bench-peers measures Sluice against it" ;;
	istiod)
		what="istiod (pilot-discovery)" mod=istio.io/istio eta="several min"
		why="make bench-peers measures Sluice against it" ;;
	*)
		return 1 ;;
	esac
}

# kube-apiserver (k8s.io/kubernetes). The version ldflags mirror upstream's
# hack/lib/version.sh so `--version` reports the pinned release.
build_kube-apiserver() {
	local v mm major rest minor ld="" p
	v=$(modversion k8s.io/kubernetes)
	mm=${v#v} major=${mm%%.*} rest=${mm#*.} minor=${rest%%.*}
	for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
		ld="$ld -X $p.gitVersion=$v -X $p.gitMajor=$major -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
	done
	gobuild "$1" "$ld" .
}

# etcd (go.etcd.io/etcd/server/v3); its version is a constant in etcd's api
# module.
build_etcd() {
	gobuild "$1" "" .
}

# prometheus (github.com/prometheus/prometheus/cmd/prometheus, a `tool` of
# the module). Module version v0.3XX.Y is Prometheus 3.XX.Y; pass it to
# --version. Built without the builtinassets tag: the web UI is not embedded
# (not needed).
#
# Upstream picks its service-discovery plugins at build time: plugins.yml
# lists them and `make plugins` generates plugins/plugins.go, one blank
# import each (v0.305.0 has no build tag for this). Ours are in
# tools/prometheus/plugins.yml, none by default: static_configs (all the
# demo and the tests use) is built in, and plugins/minimum.go always adds
# file_sd and http_sd. The SDK of every cloud and Kubernetes' client then
# stay out of the build, which is most of its time. The module cache is
# read-only (and `go build -overlay` refuses files in it), so the build
# runs on a temporary copy of the module with our plugins/plugins.go,
# through a `replace` in a copy of tools/prometheus/go.mod.
promversion() {
	modversion github.com/prometheus/prometheus | sed 's/^v0\.\([0-9]\)0\{0,1\}\([0-9][0-9]*\)\./\1.\2./'
}
build_prometheus() {
	local out=$1 m=github.com/prometheus/prometheus v src work p
	v=$(promversion)
	"$TOOLS_GO" mod download "$m"
	src=$("$TOOLS_GO" list -m -f '{{.Dir}}' "$m")
	work=$(mktemp -d "${TMPDIR:-/tmp}/sluice-prometheus.XXXXXX")
	cleanup+=("$work")
	cp -R "$src" "$work/prometheus"
	chmod -R u+w "$work/prometheus"
	{
		echo '// Code generated by tools/build.sh from tools/prometheus/plugins.yml. DO NOT EDIT.'
		echo
		echo 'package plugins'
		echo
		echo 'import ('
		for p in $(sed -n 's/^-[[:space:]]*\([^[:space:]#]*\).*/\1/p' plugins.yml); do
			echo "	_ \"$p\""
		done
		echo ')'
	} >"$work/prometheus/plugins/plugins.go"
	mkdir "$work/main"
	cp go.mod go.sum "$work/main/"
	(
		cd "$work/main"
		"$TOOLS_GO" mod edit -replace "$m=../prometheus"
		gobuild "$out" "-X github.com/prometheus/common/version.Version=$v" "$m/cmd/prometheus"
	)
}

# controller-gen (sigs.k8s.io/controller-tools/cmd/controller-gen, a `tool`
# of the module). Built from a dependency, so the version must be injected.
build_controller-gen() {
	gobuild "$1" "-X sigs.k8s.io/controller-tools/pkg/version.version=$(modversion sigs.k8s.io/controller-tools)" \
		sigs.k8s.io/controller-tools/cmd/controller-gen
}

# helm (helm.sh/helm/v4/cmd/helm, a `tool` of the module), for the chart's
# tests (deploy/): lint, template. Built from a dependency, so the version
# must be injected (upstream's Makefile sets the same variable).
build_helm() {
	gobuild "$1" "-X helm.sh/helm/v4/internal/version.version=$(modversion helm.sh/helm/v4)" \
		helm.sh/helm/v4/cmd/helm
}

# Argo Rollouts' controller (github.com/argoproj/argo-rollouts/cmd/rollouts-controller,
# a `tool` of the module). Version ldflags as upstream's Makefile sets them
# (without the leading v, which the binary adds).
build_argo-rollouts() {
	local v p=github.com/argoproj/argo-rollouts/utils/version
	v=$(modversion github.com/argoproj/argo-rollouts)
	gobuild "$1" "-X $p.version=${v#v} -X $p.gitTreeState=clean" \
		github.com/argoproj/argo-rollouts/cmd/rollouts-controller
}

# istiod (istio.io/istio/pilot/cmd/pilot-discovery, a `tool` of the module),
# with upstream's build tags for it (STANDARD_TAGS in Makefile.core.mk). The
# module is a pseudo-version: the version reported is the tree's VERSION
# file plus "-dev" and the commit, as an upstream dev build says.
build_istiod() {
	local v d rev p=istio.io/istio/pkg/version
	v=$(modversion istio.io/istio)
	"$TOOLS_GO" mod download istio.io/istio
	d=$("$TOOLS_GO" list -m -f '{{.Dir}}' istio.io/istio)
	rev=${v##*-}
	gobuild "$1" "-X $p.buildVersion=$(cat "$d/VERSION")-dev-$rev -X $p.buildGitRevision=$rev -X $p.buildStatus=Clean" \
		-tags vtprotobuf,disable_pgv istio.io/istio/pilot/cmd/pilot-discovery
}

# --- The cache.

# cachekey prints the hash of everything the tool's binary is built from
# (see the top of this file).
cachekey() {
	local f
	{
		echo "sluice tools cache 1"
		echo "tool $tool"
		declare -f gobuild modversion promversion "build_$tool"
		"$TOOLS_GO" env GOOS GOARCH
		echo "cgo $TOOLS_CGO_ENABLED"
		echo "ldflags $TOOLS_LDFLAGS"
		for f in $(cd "$tools_dir/$tool" && LC_ALL=C ls); do
			case $f in README*) continue ;; esac
			echo "file $f $(sha256sum <"$tools_dir/$tool/$f" | cut -d' ' -f1)"
		done
	} | sha256sum | cut -c1-16
}

# cachedir prints the cache's directory, or nothing when it is off.
cachedir() {
	case ${SLUICE_TOOLS_CACHE:-} in
	off) ;;
	"")
		if [ -n "${XDG_CACHE_HOME:-}" ]; then
			echo "$XDG_CACHE_HOME/sluice/tools"
		elif [ -n "${HOME:-}" ]; then
			echo "$HOME/.cache/sluice/tools"
		fi
		;;
	*) echo "$SLUICE_TOOLS_CACHE" ;;
	esac
}

# install SRC DEST copies SRC to DEST through a temporary file in DEST's
# directory and a rename, so that nobody (another make, in this clone or
# another) ever runs a half-written DEST.
install_atomic() {
	local tmp
	tmp=$(mktemp "$(dirname "$2")/.$(basename "$2").XXXXXX")
	cleanup+=("$tmp")
	if ! cp "$1" "$tmp" || ! chmod 755 "$tmp" || ! mv -f "$tmp" "$2"; then
		rm -f "$tmp"
		return 1
	fi
}

# Temporary files and directories, removed however the script ends (the
# module cache's copy is read-only, hence the chmod).
cleanup=()
clean() {
	local c
	for c in "${cleanup[@]}"; do
		if [ -e "$c" ]; then
			chmod -R u+w "$c" || true
			rm -rf "$c" || true
		fi
	done
}
trap clean EXIT

# -key TOOL prints the name of TOOL's cache entry, e.g. for a CI cache
# key.
if [ $# -eq 2 ] && [ "$1" = -key ]; then
	tool=$2
	known "$tool"
	cd "$tools_dir/$tool"
	echo "$tool-$(cachekey)"
	exit 0
fi

[ $# -eq 2 ] || usage
tool=$1 out=$2
known "$tool"
case $out in /*) ;; *) out=$PWD/$out ;; esac
mkdir -p "$(dirname "$out")"
cache=$(cachedir)
case $cache in /* | "") ;; *) cache=$PWD/$cache ;; esac
cd "$tools_dir/$tool"

name=$(basename "$out")
version=$(modversion "$mod")
if [ "$tool" = prometheus ]; then
	version="$(promversion) ($mod $version)"
fi
entry=""
if [ -n "$cache" ]; then
	entry=$cache/$tool-$(cachekey)
	# One file named after the tool, whatever OUT is called.
	if [ -x "$entry/$tool" ]; then
		install_atomic "$entry/$tool" "$out"
		# Newer than the module's files, or make would come back.
		touch "$out"
		echo ">> $out: $what $version, from the tools cache ($entry)"
		exit 0
	fi
fi

echo ">> building $what $version from source into $out"
echo "   ($why; first build only: $eta on 2 idle cores, more on busy ones${cache:+; later builds, in any clone, copy it from $cache})"
SECONDS=0
tmp=$(mktemp "$(dirname "$out")/.$name.XXXXXX")
cleanup+=("$tmp")
"build_$tool" "$tmp"
if [ -n "$entry" ]; then
	# A cache we cannot write to costs a rebuild next time, not this build.
	if ! { mkdir -p "$entry" && install_atomic "$tmp" "$entry/$tool"; }; then
		echo "   (could not store it in $entry)" >&2
	fi
fi
chmod 755 "$tmp"
mv -f "$tmp" "$out"
touch "$out"
echo ">> built $out in $((SECONDS / 60))m$((SECONDS % 60))s"
