#!/usr/bin/env bash
# meta.json's entrypoint: one process serving every labelsieve model, as the Viam registry runs one module.
exec "$(dirname "${BASH_SOURCE[0]}")/python.sh" "$(dirname "${BASH_SOURCE[0]}")/serve_all.py" "$@"
