#!/usr/bin/env bash
# Creates .venv and installs labelsieve into it (what `make` and viam-server's first_run both use).
# `./setup.sh`: everything the registry module serves (label,train); `./setup.sh test`: that and the test tools;
# `./setup.sh light`: the base only (runtime, camera, fast detector with ONNX models; no torch); or a list of extras.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
case "${1:-}" in
  "") extras="[label,train]" ;;
  test) extras="[label,train,test]" ;;
  light) extras="" ;;
  *) extras="[$1]" ;;
esac
[[ -x .venv/bin/python ]] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".${extras}"
