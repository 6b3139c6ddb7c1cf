#!/usr/bin/env bash
# Gives the geodns instances of the other clusters read-only access to one cluster.
#
#   make-reader-kubeconfig.sh --context CTX --name NAME [--server URL] [--out FILE] [--install-into CTX]...
#
# In the cluster of kubectl context CTX (which runs geodns already, so namespace geodns exists):
#   1. applies reader-rbac.yaml: ServiceAccount geodns/geodns-reader, ClusterRole geodns-reader
#      (get/list/watch on services, endpointslices and nodes, nothing else), its binding, and
#      Secret geodns/geodns-reader-token, a long-lived token of that ServiceAccount;
#   2. waits for the token controller to fill the token in;
#   3. writes a kubeconfig with one context, NAME (the cluster's name in the geodns configs),
#      to FILE (default NAME.kubeconfig, mode 0600);
#   4. for each --install-into context (the other clusters), creates or updates Secret
#      geodns/geodns-kubeconfig-NAME there, which ../shared mounts for geodns.
#
# Example, for London, whose API server the others reach at 100.64.0.10 (a tailnet address):
#   ./make-reader-kubeconfig.sh --context lon-admin --name london --server https://100.64.0.10:6443 \
#     --install-into fra-admin --install-into sea-admin --install-into sin-admin
# Run it once per cluster. Rotate a token by deleting Secret geodns/geodns-reader-token in that
# cluster and running it again.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

usage() { sed -n '4p' "$0" | sed 's/^# */usage: /' >&2; exit 2; }
context='' name='' server='' out='' into=()
while [ $# -gt 0 ]; do
  case "$1" in
    --context) context=${2:?}; shift 2 ;;
    --name) name=${2:?}; shift 2 ;;
    --server) server=${2:?}; shift 2 ;;
    --out) out=${2:?}; shift 2 ;;
    --install-into) into+=("${2:?}"); shift 2 ;;
    *) usage ;;
  esac
done
[ -n "$context" ] && [ -n "$name" ] || usage
out=${out:-$name.kubeconfig}
k() { kubectl --context "$context" "$@"; }

# The API server as this kubeconfig names it, unless --server says how the others reach it.
if [ -z "$server" ]; then
  server=$(kubectl config view --minify --context "$context" -o 'jsonpath={.clusters[0].cluster.server}')
  case "$server" in
    *://127.* | *://localhost* | *://\[::1\]*)
      echo "context $context names the API server $server, which other clusters cannot reach:" \
        "pass --server with an address they can" >&2
      exit 1
      ;;
  esac
fi

k get namespace geodns >/dev/null || {
  echo "no namespace geodns in context $context: apply the region's overlay there first" >&2
  exit 1
}
k apply -f "$here/reader-rbac.yaml"

# The token controller fills the Secret in within a second or two; wait at most 30 tries.
token=''
for _ in $(seq 1 30); do
  token=$(k -n geodns get secret geodns-reader-token -o 'jsonpath={.data.token}')
  [ -n "$token" ] && break
  sleep 1
done
[ -n "$token" ] || { echo "Secret geodns/geodns-reader-token got no token in $context" >&2; exit 1; }
ca=$(k -n geodns get secret geodns-reader-token -o 'jsonpath={.data.ca\.crt}')

umask 077
cat >"$out" <<EOF
apiVersion: v1
kind: Config
clusters:
  - name: $name
    cluster:
      server: $server
      certificate-authority-data: $ca
users:
  - name: geodns-reader@$name
    user:
      token: $(printf '%s' "$token" | base64 -d)
contexts:
  - name: $name
    context:
      cluster: $name
      user: geodns-reader@$name
current-context: $name
EOF
echo "wrote $out (context $name, server $server)"

# Check it from here: the reader lists what geodns watches, and no Secrets.
checked=yes
for what in services nodes endpointslices.discovery.k8s.io; do
  if ! kubectl --kubeconfig "$out" get "$what" --all-namespaces --request-timeout 10s >/dev/null; then
    echo "warning: the new kubeconfig cannot list $what from this machine (is $server reachable here?)" >&2
    checked=no
  fi
done
if kubectl --kubeconfig "$out" get secrets --all-namespaces --request-timeout 10s >/dev/null 2>&1; then
  echo "warning: geodns-reader can read Secrets in $context: another binding grants more than reader-rbac.yaml" >&2
  checked=no
fi
if [ "$checked" = yes ]; then echo "checked $out: lists services, nodes and endpointslices, not secrets"; fi

for dest in "${into[@]}"; do
  kubectl --context "$dest" -n geodns create secret generic "geodns-kubeconfig-$name" \
    --from-file=kubeconfig="$out" --dry-run=client -o yaml | kubectl --context "$dest" apply -f -
  kubectl --context "$dest" -n geodns label --overwrite secret "geodns-kubeconfig-$name" app.kubernetes.io/name=geodns
done
