#!/usr/bin/env bash
# Install Hulu-Med Workstation from an offline bundle (built by build_offline_bundle.py), no network.
# Usage: install_offline.sh [BUNDLE_DIR | BUNDLE.tar] [--prefix DIR] [--python PYTHON]
#                           [--manifest-sha256 HEX] [--force]
# BUNDLE defaults to the folder holding this script; --prefix to /opt/hulu-workstation.
# Layout: PREFIX/releases/VERSION/venv, PREFIX/current -> releases/VERSION (switched only after a
# complete install), PREFIX/model (when the bundle has one), PREFIX/bin/hulu-workstation (launcher).
set -euo pipefail

die() { echo "REFUSED: $*" >&2; exit 2; }

bundle="" prefix="/opt/hulu-workstation" python="python3" manifest_sha="" force=0
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) prefix=${2:?--prefix needs a folder}; shift 2 ;;
    --python) python=${2:?--python needs an interpreter}; shift 2 ;;
    --manifest-sha256) manifest_sha=${2:?--manifest-sha256 needs the recorded hash}; shift 2 ;;
    --force) force=1; shift ;;
    -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) [ -z "$bundle" ] || die "give one bundle, not '$bundle' and '$1'"; bundle=$1; shift ;;
  esac
done
[ -n "$bundle" ] || bundle=$(dirname "$(readlink -f "$0")")
mkdir -p "$prefix"
prefix=$(cd "$prefix" && pwd -P)

# The site's pip configuration (indexes, find-links, constraints) must not leak into this install.
for var in $(compgen -e); do case $var in PIP_*) unset "$var" ;; esac; done
export PIP_CONFIG_FILE=/dev/null PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 PYTHONNOUSERSITE=1

# Scratch space (a .tar bundle is unpacked here) lives under the prefix: /tmp may be a small tmpfs.
workdir=$(mktemp -d -p "$prefix" .install.XXXXXX) release="" release_done=0
cleanup() {
  rm -rf "$workdir"
  if [ -n "$release" ] && [ "$release_done" = 0 ]; then rm -rf "$release"; fi
}
trap cleanup EXIT

if [ -f "$bundle" ]; then
  case "$bundle" in *.tar) ;; *) die "$bundle: expected a bundle folder or a .tar" ;; esac
  tar -C "$workdir" --no-same-owner --no-same-permissions -xf "$bundle" || die "$bundle: unreadable tar"
  mapfile -t tops < <(find "$workdir" -mindepth 1 -maxdepth 1)
  { [ ${#tops[@]} -eq 1 ] && [ -d "${tops[0]}" ]; } || die "$bundle: expected exactly one bundle folder inside"
  bundle=${tops[0]}
fi
[ -d "$bundle" ] || die "$bundle: not a bundle folder or .tar"
bundle=$(cd "$bundle" && pwd -P)

# verify_manifest DIR: every file listed in DIR/SHA256SUMS present with its hash, no unlisted file.
verify_manifest() {
  local dir=$1 manifest=$1/SHA256SUMS problems=() line hash file
  [ -f "$manifest" ] || die "$manifest: missing (not a bundle, or an incomplete copy)"
  : > "$workdir/listed"
  while IFS= read -r line || [ -n "$line" ]; do
    [ -n "$line" ] || continue
    hash=${line%%  *} file=${line#*  }
    { [[ $hash =~ ^[0-9a-f]{64}$ ]] && [ "$file" != "$line" ]; } || die "$manifest: malformed line: $line"
    case "/$file/" in *"/../"*|//*) die "$manifest: names a path outside the bundle: $file" ;; esac
    printf '%s\n' "$file" >> "$workdir/listed"
    if [ -L "$dir/$file" ]; then problems+=("$file: is a symbolic link")
    elif [ ! -f "$dir/$file" ]; then problems+=("$file: listed in SHA256SUMS but missing")
    elif [ "$(sha256sum < "$dir/$file" | cut -d' ' -f1)" != "$hash" ]; then
      problems+=("$file: sha256 does not match SHA256SUMS (altered or corrupt)")
    fi
  done < "$manifest"
  while IFS= read -r file; do
    [ "$file" = SHA256SUMS ] || problems+=("$file: not listed in SHA256SUMS (added after the build)")
  done < <(comm -13 <(sort -u "$workdir/listed") \
                    <(cd "$dir" && find . \( -type f -o -type l \) | sed 's|^\./||' | sort))
  if [ ${#problems[@]} -gt 0 ]; then
    printf 'REFUSED: %s\n' "${problems[@]}" >&2
    die "$dir fails its SHA256SUMS check (${#problems[@]} problem(s) above); copy the bundle again"
  fi
}

echo "Verifying $bundle/SHA256SUMS ..."
if [ -n "$manifest_sha" ]; then
  actual=$(sha256sum < "$bundle/SHA256SUMS" | cut -d' ' -f1)
  [ "$actual" = "${manifest_sha,,}" ] || die "$bundle/SHA256SUMS: sha256 is $actual, not the recorded $manifest_sha"
fi
verify_manifest "$bundle"

version_value() { sed -n "s/^$1=//p" "$bundle/VERSION" | head -n 1; }
project=$(version_value PROJECT) version=$(version_value PROJECT_VERSION)
want_python=$(version_value PYTHON_VERSION) want_platform=$(version_value PLATFORM)
[[ $version =~ ^[A-Za-z0-9.+!_-]+$ ]] || die "$bundle/VERSION: no valid PROJECT_VERSION"
command -v "$python" >/dev/null || die "$python not found; pass --python /path/to/python$want_python"
read -r have_python have_platform < <("$python" -c 'import sys, sysconfig
print("%d.%d" % sys.version_info[:2], sysconfig.get_platform())')
[ "$have_python" = "$want_python" ] || die "bundle built for Python $want_python, $python is $have_python; pass --python python$want_python"
[ "$have_platform" = "$want_platform" ] || die "bundle built for $want_platform, this machine is $have_platform; build one on a $have_platform machine"
"$python" -c 'import ensurepip' 2>/dev/null || die "$python cannot create virtual environments (Debian: install python3-venv)"

if [ -d "$bundle/model" ]; then
  code_file=$(cd "$bundle/model" && find . -type f \( -iname '*.bin' -o -iname '*.pt' -o -iname '*.pth' \
    -o -iname '*.ckpt' -o -iname '*.pkl' -o -iname '*.pickle' -o -iname '*.py' -o -iname '*.pyc' \
    -o -iname '*.so' -o -iname '*.sh' -o -iname '*.npy' -o -iname '*.npz' \) | head -n 1)
  [ -z "$code_file" ] || die "$bundle/model/${code_file#./}: refused (can run code when loaded; safetensors only)"
fi

echo "Debian packages (list: debian-packages.txt):"
mapfile -t runtime < <(awk '$1 !~ /^#/ && NF && $2 == "runtime" {print $1}' "$bundle/debian-packages.txt")
if command -v dpkg-query >/dev/null; then
  missing=()
  for p in "${runtime[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -eq 0 ]; then echo "  all ${#runtime[@]} present"
  else echo "  MISSING (install from the hospital's Debian mirror, as root): apt-get install ${missing[*]}"; fi
else
  echo "  not a Debian system; make sure the equivalents of these are installed: ${runtime[*]}"
fi

mkdir -p "$prefix/releases" "$prefix/bin"
if [ -e "$prefix/releases/$version" ]; then
  [ "$force" = 1 ] || die "$prefix/releases/$version: version $version is installed already; --force reinstalls it"
  rm -rf "$prefix/releases/$version"
fi
release=$prefix/releases/$version
echo "Installing $project $version into $release (no network) ..."
"$python" -m venv "$release/venv"
pip_offline() {
  "$release/venv/bin/python" -m pip install --no-index --find-links "$bundle/wheels" --only-binary=:all: \
    --require-hashes --progress-bar off "$@"
}
pip_offline -r "$bundle/requirements.lock"
pip_offline --no-deps -r "$bundle/project.lock"
"$release/venv/bin/python" -m pip check

if [ -d "$bundle/model" ]; then
  echo "Copying the model to $prefix/model ..."
  rm -rf "$prefix/model.partial" "$prefix/model.old"
  cp -R "$bundle/model" "$prefix/model.partial"
  verify_manifest "$prefix/model.partial"
  if [ -e "$prefix/model" ]; then mv "$prefix/model" "$prefix/model.old"; fi
  mv "$prefix/model.partial" "$prefix/model"
  rm -rf "$prefix/model.old"
fi

{ cat "$bundle/VERSION"; echo "MANIFEST_SHA256=$(sha256sum < "$bundle/SHA256SUMS" | cut -d' ' -f1)"
  echo "INSTALLED_UTC=$(date -u +%Y-%m-%dT%H:%M:%SZ)"; } > "$release/INSTALLED"
launcher=$prefix/bin/hulu-workstation
{ echo '#!/usr/bin/env bash'
  echo '# Written by install_offline.sh: the workstation never contacts a model hub.'
  echo 'export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1'
  printf 'exec %q "$@"\n' "$prefix/current/venv/bin/hulu-workstation"; } > "$launcher.tmp"
chmod 755 "$launcher.tmp"
mv -f "$launcher.tmp" "$launcher"
ln -sfn "releases/$version" "$prefix/current.tmp"
mv -Tf "$prefix/current.tmp" "$prefix/current"
release_done=1
sync

echo "Installed $project $version. Start it with: $launcher"
if [ -d "$prefix/model" ]; then
  echo "Model: $prefix/model (verified); set it in Settings > Model folder, or 'hulu-workstation ask --model $prefix/model'"
fi
