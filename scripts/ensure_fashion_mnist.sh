#!/usr/bin/env bash
# Make sure the Fashion-MNIST IDX files are on disk. They come from Debian's `dataset-fashion-mnist`
# package (installed here when we are root), or from a folder the user points SLIMKIT_DATA at.
set -euo pipefail
files="train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte"
system_dir=/usr/share/datasets/fashion-mnist

has_all() {
  for f in $files; do [ -e "$1/$f" ] || [ -e "$1/$f.gz" ] || return 1; done
}

if [ -n "${SLIMKIT_DATA:-}" ] && has_all "$SLIMKIT_DATA/fashion-mnist"; then exit 0; fi
if has_all "$system_dir"; then exit 0; fi

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "Fashion-MNIST missing: installing Debian package dataset-fashion-mnist"
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q dataset-fashion-mnist >/dev/null
  has_all "$system_dir" && exit 0
fi

cat >&2 <<MSG
error: Fashion-MNIST files not found.
  Looked in: ${SLIMKIT_DATA:+$SLIMKIT_DATA/fashion-mnist and }$system_dir
  Need: $files (optionally .gz)
  Fix: sudo apt-get install dataset-fashion-mnist
   or: put the four IDX files in \$SLIMKIT_DATA/fashion-mnist/
MSG
exit 1
