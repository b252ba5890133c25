#!/usr/bin/env bash
# Debian packages this project uses outside its venv; idempotent, and apt is not touched at all
# when all are already there.
#   libb64-0d       perf_analyzer (shipped in the tritonclient==2.50.0 wheel) links against it
#   docker-compose  1.29: validates docker-compose.yml offline (`docker-compose config`), no engine needed
#   chromium, chromium-driver  the web page's tests drive Debian's chromium headless through Selenium
#                   (tests/web; pointed at /usr/bin/chromium and /usr/bin/chromedriver, nothing downloaded)
set -euo pipefail

installed() { [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]; }

need=()
installed libb64-0d || need+=(libb64-0d)
command -v docker-compose >/dev/null 2>&1 || need+=(docker-compose)
[ -x /usr/bin/chromium ] || need+=(chromium)
[ -x /usr/bin/chromedriver ] || need+=(chromium-driver)
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "install_system_deps.sh: apt-get not found; install ${need[*]} with this system's package manager" >&2
  exit 1
fi
sudo=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "install_system_deps.sh: need root (or sudo) to install ${need[*]}" >&2; exit 1; }
  sudo=(sudo)
fi

echo "install_system_deps.sh: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
install() { "${sudo[@]}" apt-get install -y -q --no-install-recommends "${need[@]}"; }
# Try the package lists already on the machine first; refresh them only if that fails.
install || { "${sudo[@]}" apt-get update -q && install; }

installed libb64-0d && command -v docker-compose >/dev/null 2>&1 && [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ] \
  || { echo "install_system_deps.sh: ${need[*]} still missing after apt-get" >&2; exit 1; }
