#!/usr/bin/env bash
# Runs a module's main.py with the project's interpreter: $LABELSIEVE_PYTHON, else the repo's .venv, else python3.
# Each module's run.sh execs this, so viam-server and `labelsieve run` start every module the same way.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="${LABELSIEVE_PYTHON:-$root/.venv/bin/python}"
[[ -x "$py" ]] || py="$(command -v python3)"
exec "$py" "$@"
