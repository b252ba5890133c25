#!/usr/bin/env bash
# Debian packages the project uses: libb64-0d (perf_analyzer) and docker-compose 1.29 (offline
# validation of docker-compose.yml; no Docker engine is needed). Idempotent; skipped when present.
set -euo pipefail
need=()
dpkg -s libb64-0d >/dev/null 2>&1 || need+=(libb64-0d)
command -v docker-compose >/dev/null 2>&1 || need+=(docker-compose)
[ ${#need[@]} -eq 0 ] && exit 0
sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null 2>&1 \
  || { $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null; }
