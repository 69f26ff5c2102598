#!/usr/bin/env bash
# Installs what Verdant needs and this machine lacks, from requirements.txt beside this script
# (Debian packages, tools from PyPI, npm packages pinned by their lock files), saying what and
# why. `verdant-dev up` and `.ci/run` both run it; nothing is installed twice.
#
# Usage: install.sh [--check]
#   --check  installs nothing: lists what is missing, and exits 1 if anything is.
# Exits 3 when only root could install what is missing (Debian packages), naming the command.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
check=false
case "${1:-}" in
  --check) check=true ;;
  "") ;;
  *) echo "install.sh: unknown argument $1 (usage: install.sh [--check])" >&2; exit 2 ;;
esac

debs=() pips=() npms=()
while read -r kind name why; do
  case "$kind" in "" | "#"*) continue ;; esac
  case "$kind" in
    deb)
      dpkg-query -W -f='${Status}' "$name" 2>/dev/null | grep -q 'install ok installed' && continue
      debs+=("$name") ;;
    pip)
      command -v "${name#*:}" >/dev/null && continue
      name=${name%%:*}
      pips+=("$name") ;;
    npm)
      [ -d "$root/$name/node_modules" ] && continue
      npms+=("$name") ;;
    *) echo "install.sh: requirements.txt: unknown kind '$kind' (deb, pip or npm)" >&2; exit 2 ;;
  esac
  echo "setup: missing $kind $name: $why"
done < "$here/requirements.txt"

if [ $((${#debs[@]} + ${#pips[@]} + ${#npms[@]})) -eq 0 ]; then
  echo "setup: everything in tests/setup/requirements.txt is here"
  exit 0
fi
$check && exit 1

if [ ${#debs[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: Debian packages need root; this installs everything above: sudo bash $here/install.sh" >&2
    exit 3
  fi
  echo "setup: installing Debian packages: ${debs[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${debs[@]}"
fi
for package in "${pips[@]}"; do
  echo "setup: installing $package (pip)"
  python3 -m pip install -q "$package"
done
for dir in "${npms[@]}"; do
  echo "setup: installing $dir's npm packages (npm ci)"
  (cd "$root/$dir" && npm ci --no-audit --no-fund)
done
echo "setup: done"
