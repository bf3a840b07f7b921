#!/usr/bin/env bash
# Creates .venv and installs labelsieve into it (what `make` and viam-server's first_run both use).
# Extras: `./setup.sh test` adds the test tools.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
extras="${1:+[$1]}"
[[ -x .venv/bin/python ]] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".${extras}"
