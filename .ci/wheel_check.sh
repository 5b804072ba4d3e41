#!/usr/bin/env bash
# The wheel as a user gets it: build the sdist and the wheel (isolated, as pip would), install the wheel into a
# fresh virtual environment with its dependencies, and run the installed `ganaug` from outside this checkout:
# --version, then a smoke search of the quickstart space. Minutes, most of them installing torch and Ray.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python="${PYTHON:-python3}"

"$python" -m build --outdir "$work/dist" "$root"
wheel=("$work"/dist/ganaug-*-py3-none-any.whl)
version="$(basename "${wheel[0]}" | cut -d- -f2)"

"$python" -m venv "$work/venv"  # fresh: none of this environment's packages, ganaug included
"$work/venv/bin/python" -m pip install -q "${wheel[0]}"

cd "$work"  # nothing of the checkout on the path: only the installed wheel can answer
installed="$("$work/venv/bin/python" -c 'import ganaug; print(ganaug.__file__)')"
case "$installed" in
    "$work/venv/"*) ;;
    *) echo "wheel_check: ganaug imported from $installed, not from the fresh venv" >&2; exit 1 ;;
esac
test "$("$work/venv/bin/ganaug" --version)" = "ganaug $version"
RAY_ADDRESS="" "$work/venv/bin/ganaug" tune "$root/search_spaces/quickstart.yaml" --smoke-test \
    --storage "$work/results" --num-cpus 2 | tee "$work/search.log"
test -f "$work/results/quickstart-smoke/summary.csv"
grep -q "ganaug evaluate $work/results/quickstart-smoke" "$work/search.log"
echo "wheel_check: ganaug $version builds, installs into a fresh venv and runs its smoke search"
