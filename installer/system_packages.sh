#!/usr/bin/env bash
# Debian packages the tests use as real peers and display: DCMTK, Orthanc, Xvfb and Qt's xcb libs.
set -euo pipefail
packages=(dcmtk orthanc xvfb xauth libxcb-icccm4 libxcb-keysyms1 libxcb-cursor0 libxkbcommon-x11-0
          libxcb-xinerama0 libxcb-randr0 libxcb-image0 libxcb-render-util0 libxcb-shape0
          libegl1 libgl1 libglx-mesa0 libegl-mesa0 iproute2 fonts-dejavu-core openssl)
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
