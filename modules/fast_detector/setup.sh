#!/usr/bin/env bash
# first_run of the light registry module (modules/fast_detector/meta.json): the base install, no torch.
exec "$(dirname "${BASH_SOURCE[0]}")/../../setup.sh" light
