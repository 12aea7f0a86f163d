#!/usr/bin/env bash
# Collects what vigil-agent needs to run into a root filesystem folder, and nothing else: the
# binary (stripped), and exactly the shared libraries `ldd` says it loads (for the portable agent
# the dynamic loader and glibc's libc and libm), each at the path the loader looks for it. Meant for the portable
# agent (VIGIL_PORTABLE_AGENT, the default), whose closure is that small; any binary works.
# Usage: collect-rootfs.sh AGENT_BINARY ROOTFS_DIR   (then: podman build -f Containerfile ROOTFS_DIR/..)
set -euo pipefail
if [ $# -ne 2 ]; then
  echo "usage: $0 AGENT_BINARY ROOTFS_DIR" >&2
  exit 2
fi
bin=$1
root=$2
if [ ! -x "$bin" ]; then
  echo "collect-rootfs: $bin is not an executable file" >&2
  exit 1
fi
# "name => /path (addr)" for each library, "/path (addr)" for the loader; vdso has no file.
libs=$(ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}')
if [ -z "$libs" ]; then
  echo "collect-rootfs: ldd found no shared libraries in $bin (not a dynamic executable?)" >&2
  exit 1
fi
if ldd "$bin" | grep -q "not found"; then
  echo "collect-rootfs: $bin needs libraries this system lacks:" >&2
  ldd "$bin" | grep "not found" >&2
  exit 1
fi
mkdir -p "$root/usr/bin" "$root/etc/vigil/tls" "$root/var/lib/vigil" "$root/tmp"
chmod 1777 "$root/tmp"
chmod 700 "$root/var/lib/vigil"
install -m 755 "$bin" "$root/usr/bin/vigil-agent"
# Debug information stays with the build: the image needs none of it.
if command -v strip >/dev/null; then
  strip "$root/usr/bin/vigil-agent"
fi
for lib in $libs; do
  # The file itself (symbolic links followed), at the path the loader was given.
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done
echo "collect-rootfs: $(echo "$libs" | wc -l) libraries; $(du -sk "$root" | cut -f1) KiB in $root"
