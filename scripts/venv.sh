# Sourced by scripts/serve, scripts/test and scripts/upgrade-deps: make .venv exist, with exactly
# the locked versions installed (requirements/*.txt, exported from uv.lock, every file checked
# against its hash) and this checkout installed on top without resolving anything.
# Re-installs only when the lock or pyproject.toml changed, so repeated runs start at once.
# $1: "" for the service's dependencies, "dev" for those plus the test and lint tools.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
EXTRAS="${1:-}"
PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "healthinfo needs Python 3.11 or newer as \$PYTHON or python3" >&2
  exit 1
fi
LOCK="$ROOT/requirements/${EXTRAS:-runtime}.txt"
[ -f "$LOCK" ] || { echo "scripts/venv.sh: no lock file $LOCK" >&2; exit 1; }
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
FINGERPRINT="$(cat "$ROOT/pyproject.toml" "$ROOT/requirements/bootstrap.txt" "$LOCK" | sha256sum | cut -c1-16)"
STAMP="$VENV/.installed-$FINGERPRINT-${EXTRAS:-runtime}"
# A dev install holds every runtime package too: scripts/serve after scripts/test installs nothing.
DEV_STAMP="$VENV/.installed-$(cat "$ROOT/pyproject.toml" "$ROOT/requirements/bootstrap.txt" "$ROOT/requirements/dev.txt" | sha256sum | cut -c1-16)-dev"
if [ ! -f "$STAMP" ] && { [ -n "$EXTRAS" ] || [ ! -f "$DEV_STAMP" ]; }; then
  PIP=("$VENV/bin/python" -m pip --disable-pip-version-check --quiet)
  # This machine's pip.conf names local indexes that may not exist: pip warns once per package.
  exec 3>&2 2> >(grep -v "is ignored: it is neither a file nor a directory" >&3)
  "${PIP[@]}" install --require-hashes --no-deps -r "$ROOT/requirements/bootstrap.txt"
  "${PIP[@]}" install --require-hashes --no-deps -r "$LOCK"
  # The project itself: no dependency resolution (all of them came from the lock), and the build
  # backend is the locked one already in the venv.
  "${PIP[@]}" install --no-deps --no-build-isolation -e "$ROOT"
  rm -f "$VENV"/.installed-*
  touch "$STAMP"
  exec 2>&3 3>&-
fi
export PATH="$VENV/bin:$PATH"
