#!/usr/bin/env bash
# Installs what the demo and the tests need on a fresh Debian/Ubuntu machine:
# Xvfb, PipeWire, Chromium, ffmpeg, coturn (for the TURN benchmark), the CNI
# plugins and iptables (bridge-mode jobs) and the rest listed in
# .ci/apt-*.txt, plus the non-root user the example jobs run as. Idempotent:
# installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"

pkgs=(xvfb xauth ca-certificates curl git make procps)
for f in .ci/apt-*.txt; do
  [ -e "$f" ] || continue
  while read -r p; do
    p="${p%%#*}"; p="${p// /}"
    [ -n "$p" ] && pkgs+=("$p")
  done < "$f"
done
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
  # coturn is only the TURN benchmark's reference; Debian enables its system
  # service on install, which would leave a TURN server listening on the
  # machine. The benchmark starts its own.
  if [[ " ${missing[*]} " == *" coturn "* ]] && command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
    $SUDO systemctl disable --now coturn >/dev/null 2>&1 || true
  fi
fi

# The example jobs and the tests run sessions as this non-root user, as a
# production job would.
id pixelstream >/dev/null 2>&1 || $SUDO useradd --system --create-home --shell /usr/sbin/nologin pixelstream

for tool in go node npm; do
  command -v "$tool" >/dev/null || { echo "$tool is required (Go 1.26+, Node.js 20+ with npm)" >&2; exit 1; }
done
