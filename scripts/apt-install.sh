# Sourced by the ensure-*.sh scripts. `apt_install LABEL PACKAGE NO_APT_HINT` installs a Debian package,
# as root (as in CI) or with passwordless sudo; without either, or without apt-get, it exits 1 with a hint.
apt_install() {
  local label=$1 package=$2 no_apt_hint=$3
  local -a as_root
  if [ "$(id -u)" -eq 0 ]; then
    as_root=()
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    as_root=(sudo -n)
  else
    echo "$label: $package is missing and installing it needs root: run 'sudo apt-get install -y $package'" >&2
    exit 1
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "$label: $package is missing and there is no apt-get here; $no_apt_hint" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  # A fresh image has no package lists; an existing one may be stale, so fall back to updating them.
  if ! "${as_root[@]}" apt-get install -y "$package"; then
    "${as_root[@]}" apt-get update
    "${as_root[@]}" apt-get install -y "$package"
  fi
}
