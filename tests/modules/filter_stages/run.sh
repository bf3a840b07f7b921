#!/usr/bin/env bash
exec "$(dirname "${BASH_SOURCE[0]}")/../../../modules/python.sh" "$(dirname "${BASH_SOURCE[0]}")/main.py" "$@"
