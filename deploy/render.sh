#!/usr/bin/env bash
# Renders deploy/verdant.yaml: the Helm chart with its default values, release "verdant" in
# namespace verdant-system, CRDs included, after the Namespace itself. A test
# (tests/tests/chart.rs) fails when the committed file differs from what this prints.
#   bash deploy/render.sh > deploy/verdant.yaml
# HELM names the helm binary (default: helm on PATH; tests/controlplane/build.sh builds one).
set -euo pipefail
cd "$(dirname "$0")/.."
helm=${HELM:-helm}
cat <<'HEADER'
# Verdant, installed without Helm: `kubectl apply --server-side -f deploy/verdant.yaml`.
# Rendered from charts/verdant with its default values by deploy/render.sh. Do not edit:
# change the chart, or patch this file with Kustomize.
---
apiVersion: v1
kind: Namespace
metadata:
  name: verdant-system
  labels:
    app.kubernetes.io/part-of: verdant
HEADER
"$helm" template verdant charts/verdant --namespace verdant-system --include-crds
