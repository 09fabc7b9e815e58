#!/usr/bin/env bash
# Checks the Helm chart the way CI does: `helm lint` and
# `helm template | kubeconform -strict` over the default values and the
# multi-replica values (ci/multi-replica-values.yaml), and that the chart
# refuses more than one replica on SQLite. Tools are Go modules at pinned
# versions; the Kubernetes schemas are generated from the OpenAPI document of
# the k8s.io/kubernetes module of KUBE_VERSION (no network but the Go proxy).
set -euo pipefail
cd "$(dirname "$0")/../.."

HELM_VERSION=v3.21.4
KUBECONFORM_VERSION=v0.8.0
KUBE_VERSION=1.34.4
tools="${TOOLS:-$PWD/.tools}"
chart=deploy/helm/handoff

install() { # name module version
	if [ ! -x "$tools/$1-$3" ]; then
		GOBIN="$tools" go install "$2@$3"
		mv "$tools/$1" "$tools/$1-$3"
	fi
}
install helm helm.sh/helm/v3/cmd/helm "$HELM_VERSION"
install kubeconform github.com/yannh/kubeconform/cmd/kubeconform "$KUBECONFORM_VERSION"
helm="$tools/helm-$HELM_VERSION"
kubeconform="$tools/kubeconform-$KUBECONFORM_VERSION"

schemas="$tools/kube-schemas-$KUBE_VERSION"
if [ ! -f "$schemas/deployment-apps-v1.json" ]; then
	dir=$(cd "$tools" && GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@v$KUBE_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
	go run ./.ci/kubeschema "$dir/api/openapi-spec/swagger.json" "$schemas"
fi

# The ServiceMonitor is a Prometheus Operator CRD, not part of Kubernetes'
# API: kubeconform skips that kind.
validate() { # description, then helm template arguments
	local what=$1
	shift
	echo "== $what"
	"$helm" lint --strict "$chart" "$@"
	"$helm" template handoff "$chart" "$@" |
		"$kubeconform" -strict -summary -kubernetes-version "$KUBE_VERSION" -skip ServiceMonitor \
			-schema-location "$schemas/{{ .ResourceKind }}{{ .KindSuffix }}.json"
}
validate "default values"
validate "multi-replica values (PostgreSQL, ServiceMonitor)" -f "$chart/ci/multi-replica-values.yaml"

echo "== replicaCount > 1 on SQLite is refused"
if out=$("$helm" template handoff "$chart" --set replicaCount=2 2>&1); then
	echo "helm template accepted replicaCount=2 with SQLite"
	exit 1
fi
grep -q "SQLite" <<<"$out" || { echo "unexpected error: $out"; exit 1; }
echo "refused: ${out##*: }"
