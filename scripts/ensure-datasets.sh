#!/usr/bin/env bash
# Make sure Debian's Fashion-MNIST package is installed, so that the tests which train on real data run
# (models/image_files.py finds its files in the system folder); idempotent. Installing needs root (as in
# CI) or passwordless sudo. The only dataset Debian packages (`apt-cache search dataset-`).
set -euo pipefail
PACKAGE=dataset-fashion-mnist
FOLDER=/usr/share/datasets/fashion-mnist
FILES=(train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz)

has_files() {
  for f in "${FILES[@]}"; do [ -f "$FOLDER/$f" ] || return 1; done
}

if has_files; then
  echo "datasets: found $FOLDER"
  exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
  as_root=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  as_root=(sudo -n)
else
  echo "datasets: $FOLDER is missing and installing it needs root: run 'sudo apt-get install -y $PACKAGE'" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "datasets: $FOLDER is missing and there is no apt-get here; put Fashion-MNIST's IDX files in" \
    "the data directory's fashion_mnist/ instead (docs/spec.md, Local datasets)" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
# A fresh image has no package lists; an existing one may be stale, so fall back to updating them.
if ! "${as_root[@]}" apt-get install -y "$PACKAGE"; then
  "${as_root[@]}" apt-get update
  "${as_root[@]}" apt-get install -y "$PACKAGE"
fi
if ! has_files; then
  echo "datasets: apt-get installed $PACKAGE but $FOLDER still lacks its files" >&2
  exit 1
fi
echo "datasets: installed $PACKAGE in $FOLDER"
