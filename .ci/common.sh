# Sourced by the job scripts: a wheel built as a user would build it, and fresh venvs that install it.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python}"

# build_wheel DIR: builds the edgeclf wheel into DIR from a copy of the files git holds (committed and new,
# not ignored), so that a stale build/ or egg-info in the checkout cannot leak into it; prints its path.
build_wheel() {
  local out="$1"
  mkdir -p "$out/src"
  (cd "$ROOT" && git ls-files --cached --others --exclude-standard | while IFS= read -r f; do
    [ -e "$f" ] && printf '%s\n' "$f"; done) | tar -C "$ROOT" -cf - -T - | tar -C "$out/src" -xf -
  "$PYTHON" -m pip wheel -q --no-deps -w "$out" "$out/src" >&2
  ls "$out"/edgeclf-*.whl
}

# fresh_venv DIR REQUIREMENT...: a new venv with only these installed. The checkout's tests/ import each
# other as `tests.*`, so a folder holding only a link to them goes on sys.path through a .pth file: `tests`
# comes from the checkout, and every package (edgeclf.edge_app, edgeclf.train, edgeclf.convert,
# edgeclf.benchmarks) from the wheel alone: one the wheel lacks is missing, not quietly taken from the checkout.
fresh_venv() {
  local venv="$1"; shift
  "$PYTHON" -m venv "$venv"
  "$venv/bin/python" -m pip install -q "$@"
  local site
  site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')"
  mkdir -p "$venv/checkout-tests" && ln -s "$ROOT/tests" "$venv/checkout-tests/tests"
  printf '%s\n' "$venv/checkout-tests" > "$site/zz-edgeclf-checkout-tests.pth"
}

# run_tests VENV PYTEST ARGS...: pytest of that venv on the checkout's tests, from a folder outside the
# checkout with PYTHONSAFEPATH, so that nothing puts the checkout's packages ahead of the installed ones.
run_tests() {
  local venv="$1"; shift
  PYTHONSAFEPATH=1 "$venv/bin/python" -m pytest -q -p no:cacheprovider -rfEs --rootdir "$ROOT" \
    -c "$ROOT/pyproject.toml" "$@"
}
