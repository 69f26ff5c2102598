#!/usr/bin/env bash
# Builds the pinned control plane (etcd, kube-apiserver, kube-controller-manager, kubectl), the
# node's Kubernetes parts (kube-scheduler, kubelet, kube-proxy), the
# chart tools (helm, kubeconform) and the tests' OpenID provider (verdant-oidc-provider, zitadel's
# example provider wrapped in ./oidc) from the Go module proxy. Nothing prebuilt is downloaded.
#
# Each tool lands in its own versioned folder under the cache directory, so a second run builds
# nothing, and a build that is interrupted leaves no half-written binary behind:
#   ${VERDANT_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/verdant}/controlplane/<name>-<version>/
# The harness in tests/src/controlplane finds them there by the same versions.env.
#
# Usage: build.sh [--print-dirs]    (--print-dirs lists the bin folders and builds nothing)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
. "$here/versions.env"

cache="${VERDANT_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/verdant}/controlplane"
k8s_dir="$cache/kubernetes-$KUBERNETES_VERSION"
etcd_dir="$cache/etcd-$ETCD_VERSION"
helm_dir="$cache/helm-$HELM_VERSION"
kubeconform_dir="$cache/kubeconform-$KUBECONFORM_VERSION"
oidc_dir="$cache/oidc-provider-$ZITADEL_OIDC_VERSION"
kstatus_dir="$cache/kstatus-$CLI_UTILS_VERSION"

if [ "${1:-}" = "--print-dirs" ]; then
  printf '%s\n' "$k8s_dir" "$etcd_dir" "$helm_dir" "$kubeconform_dir" "$oidc_dir" "$kstatus_dir"
  exit 0
fi

command -v go >/dev/null || { echo "build.sh: Go is needed to build the control plane (install golang)" >&2; exit 1; }
mkdir -p "$cache"

log() { printf '[controlplane %s] %s\n' "$(date +%H:%M:%S)" "$*"; }

# build_into DIR DESCRIPTION INPUTS COMMAND...: runs COMMAND with $out set to a fresh temporary
# folder and moves that folder to DIR only when the command succeeded. DIR is reused while its
# recipe stamp matches: a hash of the COMMAND (with the body of its shell function), GOFLAGS and
# the files named in INPUTS (the wrapper module's go.mod and go.sum). So editing how a tool is
# built, or its pins, rebuilds just that tool.
build_into() {
  local dir=$1 what=$2 inputs=$3
  shift 3
  local recipe
  # shellcheck disable=SC2086 # INPUTS is a list of paths without spaces
  recipe=$({ declare -f "$1"; printf '%s\n' "$@" "$GOFLAGS"; [ -z "$inputs" ] || cat $inputs; } | sha256sum | cut -c1-16)
  if [ -d "$dir" ] && [ "$(cat "$dir/.recipe" 2>/dev/null)" = "$recipe" ]; then
    log "$what: cached in $dir"
    return 0
  fi
  log "$what: building (cold builds take minutes; progress below)"
  local start=$SECONDS
  out=$(mktemp -d "$cache/.build.XXXXXX")
  if ! "$@"; then
    rm -rf "$out"
    log "$what: build FAILED"
    return 1
  fi
  echo "$recipe" > "$out/.recipe"
  chmod 755 "$out"
  rm -rf "$dir"
  mv "$out" "$dir"
  log "$what: built in $((SECONDS - start)) s -> $dir"
}

# Fixed, not inherited: the recipe stamps must not depend on the caller's environment.
export GOFLAGS="-buildvcs=false -trimpath"

build_kubernetes() {
  local minor=${KUBERNETES_VERSION#v1.}
  minor=${minor%%.*}
  local pkg=k8s.io/component-base/version
  local ldflags="-s -w -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
  ldflags="$ldflags -X k8s.io/client-go/pkg/version.gitVersion=$KUBERNETES_VERSION -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=$minor"
  (cd "$here/kubernetes" && go build -v -ldflags "$ldflags" -o "$out/" \
    k8s.io/kubernetes/cmd/kube-apiserver \
    k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler \
    k8s.io/kubernetes/cmd/kubelet \
    k8s.io/kubernetes/cmd/kube-proxy \
    k8s.io/kubernetes/cmd/kubectl 2>&1 | progress)
}

build_etcd() {
  (cd "$here/etcd" && go build -v -ldflags "-s -w" -o "$out/etcd" . 2>&1 | progress)
}

# The tests' OpenID provider: oidc/main.go over zitadel's example provider. Its go.mod must
# require the zitadel/oidc version that versions.env pins (the cache folder is named after it).
build_oidc_provider() {
  grep -q "github.com/zitadel/oidc/v3 $ZITADEL_OIDC_VERSION\$" "$here/oidc/go.mod" || {
    echo "build.sh: oidc/go.mod does not require github.com/zitadel/oidc/v3 $ZITADEL_OIDC_VERSION (versions.env); run: cd $here/oidc && go get github.com/zitadel/oidc/v3@$ZITADEL_OIDC_VERSION && go mod tidy" >&2
    return 1
  }
  (cd "$here/oidc" && go build -v -ldflags "-s -w" -o "$out/verdant-oidc-provider" . 2>&1 | progress)
}

# build_tool PACKAGE@VERSION VERSION_VARIABLE: go install, stamping the version the tool reports.
build_tool() {
  local pkg=$1 version_var=$2
  GOBIN="$out" go install -v -ldflags "-s -w -X $version_var=${pkg##*@}" "$pkg" 2>&1 | progress
}

# verdant-kstatus: kstatus/main.go over sigs.k8s.io/cli-utils' kstatus, the health rules Flux
# applies, for the tests that check what GitOps tools make of our objects. Its go.mod must
# require the cli-utils version that versions.env pins (the cache folder is named after it).
build_kstatus() {
  grep -q "sigs.k8s.io/cli-utils $CLI_UTILS_VERSION\$" "$here/kstatus/go.mod" || {
    echo "build.sh: kstatus/go.mod does not require sigs.k8s.io/cli-utils $CLI_UTILS_VERSION (versions.env); run: cd $here/kstatus && go get sigs.k8s.io/cli-utils@$CLI_UTILS_VERSION && go mod tidy" >&2
    return 1
  }
  (cd "$here/kstatus" && go build -v -ldflags "-s -w" -o "$out/verdant-kstatus" . 2>&1 | progress)
}

# progress: condenses `go build -v` package lines and `go: downloading` lines into running counts;
# passes everything else (errors) through unchanged.
progress() {
  awk '/^go: downloading / { d++; if (d % 50 == 0) { printf "  ... %d modules downloaded\n", d; fflush() } next }
       /^[a-zA-Z0-9_.\/-]+$/ { n++; if (n % 200 == 0) { printf "  ... %d packages compiled\n", n; fflush() } next }
       { print; fflush() }
       END { printf "  ... %d modules downloaded, %d packages compiled\n", d, n }'
}

build_into "$etcd_dir" "etcd $ETCD_VERSION" "$here/etcd/go.mod $here/etcd/go.sum $here/etcd/main.go" build_etcd
build_into "$k8s_dir" "kubernetes $KUBERNETES_VERSION (kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy, kubectl)" \
  "$here/kubernetes/go.mod $here/kubernetes/go.sum" build_kubernetes
build_into "$helm_dir" "helm $HELM_VERSION" "" build_tool "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" helm.sh/helm/v3/internal/version.version
build_into "$kubeconform_dir" "kubeconform $KUBECONFORM_VERSION" "" build_tool "github.com/yannh/kubeconform/cmd/kubeconform@$KUBECONFORM_VERSION" main.version
build_into "$oidc_dir" "verdant-oidc-provider (zitadel/oidc $ZITADEL_OIDC_VERSION)" \
  "$here/oidc/go.mod $here/oidc/go.sum $here/oidc/main.go $here/oidc/keys.go" build_oidc_provider
build_into "$kstatus_dir" "verdant-kstatus (sigs.k8s.io/cli-utils $CLI_UTILS_VERSION)" \
  "$here/kstatus/go.mod $here/kstatus/go.sum $here/kstatus/main.go" build_kstatus
log "all tools ready under $cache"
