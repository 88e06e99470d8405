#!/usr/bin/env bash
# Golden files for the renderer's parity suite (tests/render/fixtures/<case>/).
#
#   scripts/render-fixtures.sh regen [CASE...]   write expected.yaml from `kubectl kustomize`
#   scripts/render-fixtures.sh check             re-run `kubectl kustomize` on every case and
#                                                fail if any expected.yaml differs from it; also
#                                                render the repo's own environments/* with baton
#                                                and kubectl kustomize and require equal output
#
# A case is rendered at its own directory. A case with error.txt is one baton must refuse
# (tests/render.rs checks that every line of error.txt appears in baton's error); `check`
# also confirms kubectl kustomize refuses it, unless the case holds `kustomize-accepts`
# (a feature kustomize has and baton declines) or `kustomize-unchecked` (needs the network).
# `cargo test --test render` compares baton with the goldens without needing kubectl.
#
# Cases under tests/render/helm-fixtures/ use `helmCharts`: their goldens come from
# `kubectl kustomize --enable-helm --helm-command $HELM` with the helm of scripts/kube-assets
# (BATON_KUBE_ASSETS, else `scripts/kube-assets --check`), the helm `cargo test --test
# render_helm` runs too.
set -euo pipefail
cd "$(dirname "$0")/.."
fixtures=tests/render/fixtures
helm_fixtures=tests/render/helm-fixtures
mode=${1:-}
shift || true
assets=${BATON_KUBE_ASSETS:-$(scripts/kube-assets --check 2>/dev/null || true)}
helm="$assets/helm"

if ! command -v kubectl >/dev/null 2>&1; then
  echo "render-fixtures: kubectl is not installed; it is the oracle these goldens come from" >&2
  exit 1
fi
echo "render-fixtures: oracle is $(kubectl version --client 2>/dev/null | grep -i kustomize || echo 'kubectl kustomize')" >&2

cases=("$@")
if [ "${#cases[@]}" -eq 0 ]; then
  for d in "$fixtures"/*/ "$helm_fixtures"/*/; do cases+=("$(basename "$d")"); done
fi

failed=0
for c in "${cases[@]}"; do
  dir="$fixtures/$c"
  kustomize=(kubectl kustomize)
  if [ ! -d "$dir" ] && [ -d "$helm_fixtures/$c" ]; then
    dir="$helm_fixtures/$c"
    if [ ! -x "$helm" ]; then
      echo "render-fixtures: $c needs helm: run scripts/kube-assets or set BATON_KUBE_ASSETS" >&2
      exit 1
    fi
    kustomize=(kubectl kustomize --enable-helm --helm-command "$helm")
  fi
  [ -d "$dir" ] || { echo "no such case: $c" >&2; exit 2; }
  if [ -f "$dir/error.txt" ]; then
    if [ "$mode" = check ] && [ ! -e "$dir/kustomize-accepts" ] && [ ! -e "$dir/kustomize-unchecked" ]; then
      if "${kustomize[@]}" "$dir" >/dev/null 2>&1; then
        echo "FAIL $c: kubectl kustomize accepts a tree baton must refuse (add kustomize-accepts if intended)"
        failed=1
      fi
    fi
    continue
  fi
  out=$(mktemp)
  if ! "${kustomize[@]}" "$dir" >"$out" 2>"$out.err"; then
    echo "FAIL $c: kubectl kustomize failed: $(cat "$out.err")"
    failed=1
    rm -f "$out" "$out.err"
    continue
  fi
  case "$mode" in
    regen)
      mv "$out" "$dir/expected.yaml"
      ;;
    check)
      if ! cmp -s "$out" "$dir/expected.yaml"; then
        echo "FAIL $c: expected.yaml differs from kubectl kustomize:"
        diff -u "$dir/expected.yaml" "$out" | head -40 || true
        failed=1
      fi
      rm -f "$out"
      ;;
    *)
      echo "usage: $0 regen [CASE...] | check" >&2
      rm -f "$out" "$out.err"
      exit 2
      ;;
  esac
  rm -f "$out.err"
done
if [ "$mode" = check ] && [ "$#" -eq 0 ]; then
  cargo build --quiet --bin baton
  for env in environments/*/; do
    env=$(basename "$env")
    if ! diff -u <(kubectl kustomize "environments/$env" 2>/dev/null) <("${CARGO_TARGET_DIR:-target}/debug/baton" --repo . render "$env") >/tmp/render-env-$$.diff; then
      echo "FAIL environments/$env: baton render differs from kubectl kustomize:"
      head -40 /tmp/render-env-$$.diff
      failed=1
    fi
    rm -f /tmp/render-env-$$.diff
  done
fi
if [ "$failed" -ne 0 ]; then
  echo "render-fixtures: $mode found problems" >&2
  exit 1
fi
echo "render-fixtures: $mode ok (${#cases[@]} cases)" >&2
