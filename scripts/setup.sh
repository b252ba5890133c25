#!/usr/bin/env bash
# Install everything the project needs into ./.venv (idempotent; re-running is cheap).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -x scripts/install_system_deps.sh ]; then scripts/install_system_deps.sh; fi

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
stamp=.venv/.bodydance-installed
want=$(sha256sum pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  python -m pip install -q --upgrade pip
  # The CPU build of torch lies on this disk under exactly this pin; a looser one pulls CUDA builds.
  python -m pip install -q "torch==2.13.0"
  python -m pip install -q -e ".[server,export,dev,web]"
  echo "$want" > "$stamp"
fi
