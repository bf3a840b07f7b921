#!/usr/bin/env bash
# Creates .venv and installs labelsieve into it (what `make` and viam-server's first_run both use).
# `./setup.sh`: everything the registry module serves (label,train); `./setup.sh test`: that and the test tools;
# `./setup.sh light`: the base only (runtime, camera, fast detector with ONNX models; no torch); or a list of extras.
# As a first_run it must fail fast and say why: viam-server waits up to an hour for it and then aborts the whole reconfigure.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
case "${1:-}" in
  "") extras="[label,train]" ;;
  test) extras="[label,train,test,scale]" ;;
  light) extras="" ;;
  *) extras="[$1]" ;;
esac
fail() { echo "labelsieve setup: $*" >&2; exit 1; }
if [[ ! -x .venv/bin/python ]]; then
  python=""
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null && [[ "$("$candidate" -c 'import sys; print(sys.version_info[:2] == (3, 11))' 2>/dev/null)" == True ]]; then
      python="$candidate"; break
    fi
  done
  [[ -n "$python" ]] || fail "needs Python 3.11 (found: $(python3 --version 2>&1 || echo none)); install it, e.g. 'apt install python3.11 python3.11-venv', then retry"
  "$python" -m venv .venv || fail "could not create .venv with $python; on Debian or Ubuntu install python3.11-venv"
fi
pip_install() {
  .venv/bin/python -m pip install -q --retries 1 --timeout 20 "$@" ||
    fail "installing the Python packages failed (pip's message is above): is a package index reachable? Offline, point pip at a wheelhouse: PIP_NO_INDEX=1 PIP_FIND_LINKS=/path/to/wheels $0 ${1:-}"
}
pip_install --upgrade pip
pip_install -e ".${extras}"
