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

# On a fresh VM, unattended-upgrades or cloud-init often hold the apt/dpkg locks for a while after
# boot: wait for them (up to lock_wait seconds) instead of failing at once. DPkg::Lock::Timeout
# covers dpkg's locks (install); `apt-get update`'s lists lock is not covered by it on every apt
# version, so update is retried while apt reports that lock as held.
lock_wait=${SLIMKIT_APT_LOCK_TIMEOUT:-300}

apt_update_waiting_for_lock() {
  local deadline=$((SECONDS + lock_wait)) out said=""
  while ! out=$(LC_ALL=C apt-get -o DPkg::Lock::Timeout="$lock_wait" update -q 2>&1); do
    if ! grep -q "Could not get lock" <<<"$out" || [ "$SECONDS" -ge "$deadline" ]; then
      printf '%s\n' "$out" >&2
      return 1
    fi
    [ -n "$said" ] || echo "another apt process holds the package lists lock: waiting for it (up to ${lock_wait}s)"
    said=1
    sleep 5
  done
  grep -E '^(W|E): ' <<<"$out" >&2 || true  # apt's warnings, as before
}

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "Fashion-MNIST missing: installing Debian package dataset-fashion-mnist"
  echo "(if another apt/dpkg process holds the lock, this waits for it, up to ${lock_wait}s)"
  apt_update_waiting_for_lock
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout="$lock_wait" \
    install -y -q dataset-fashion-mnist >/dev/null
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
