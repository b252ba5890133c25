#!/usr/bin/env bash
# The main job: install, export the models, start the embedded Triton server, and dance.
#   scripts/demo.sh [PHOTO] [--template NAME] [--out out.mp4]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
. .venv/bin/activate
exec bodydance animate "$@"
