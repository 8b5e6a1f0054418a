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

# shellcheck source=apt-install.sh
source "$(dirname "$0")/apt-install.sh"
apt_install datasets "$PACKAGE" \
  "put Fashion-MNIST's IDX files in the data directory's fashion_mnist/ instead (docs/spec.md, Local datasets)"
if ! has_files; then
  echo "datasets: apt-get installed $PACKAGE but $FOLDER still lacks its files" >&2
  exit 1
fi
echo "datasets: installed $PACKAGE in $FOLDER"
