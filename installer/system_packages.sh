#!/usr/bin/env bash
# Debian packages the tests use as real peers and display: DCMTK, Orthanc, Xvfb and Qt's xcb libs.
set -euo pipefail
# One list for this script and the offline installer: "<package> <role>" lines (runtime and test).
mapfile -t packages < <(awk '$1 !~ /^#/ && NF {print $1}' "$(dirname "$0")/debian-packages.txt")
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "Missing Debian packages (install them as root): ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive RUNLEVEL=1
# Never let the orthanc package start a system-wide service listening on all interfaces.
if [ ! -e /usr/sbin/policy-rc.d ]; then printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; fi
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
