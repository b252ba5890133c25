#!/usr/bin/env bash
# Install what the tests need, then run the whole suite (a real tritonserver included).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
. .venv/bin/activate
python -m pytest -q "$@"
