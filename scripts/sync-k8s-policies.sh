#!/usr/bin/env bash
# Copies the example policies (policies/*.yaml, not their tests) into the Kubernetes material,
# where kustomize can load them (it refuses files outside a kustomization's directory):
#  istio/gatehouse/policies/          Istio's default trust domain: spiffe://shop.example/ -> spiffe://cluster.local/
#  istio/gatehouse/overlays/envoy/policies/   unchanged, for plain Envoy with the examples' shop.example SPIFFE IDs
# test/integration/deploy-configs.test.ts fails when a copy drifts; run this after editing policies/.
set -euo pipefail
cd "$(dirname "$0")/.."
base=istio/gatehouse/policies
envoy=istio/gatehouse/overlays/envoy/policies
rm -f "$base"/*.yaml "$envoy"/*.yaml
for f in policies/*.yaml; do
  case "$f" in *.test.yaml) continue ;; esac
  name=$(basename "$f")
  sed 's#spiffe://shop\.example/#spiffe://cluster.local/#g' "$f" > "$base/$name"
  cp "$f" "$envoy/$name"
done
