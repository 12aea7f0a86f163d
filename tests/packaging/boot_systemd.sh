#!/bin/sh
# Boots this machine's systemd as PID 1 of the namespaces this script runs in, over an overlay of
# this machine's / (the host is left as it is):
#   mkdir CG; echo $$ >CG/cgroup.procs          (CG: a new cgroup in the cgroup2 hierarchy)
#   unshare -C -m -p -u [-n] --fork --kill-child --propagation private \
#     sh boot_systemd.sh ROOT [SHARE] [UNIT...]
# ROOT: a folder on a filesystem of its own (an overlay's upper layer cannot live inside its
# lower one) holding upper/, work/ and merged/; what the caller put in upper/ is in the booted
# system (/etc/hostname, units under /etc/systemd/system). SHARE, when not "-", is seen read-only
# at /srv/vigil-test. Each UNIT (in upper/etc/systemd/system) starts at boot.
# This machine's own enabled services (databases, web servers) stay off: the booted system starts
# only its basic units, D-Bus, logind and the UNITs. The cgroup namespace's root is CG, so the
# booted systemd manages that subtree alone, with cgroup2 (no controllers it may need: those of
# cgroup v1 stay where they are). The console is this script's terminal if it has one (`script`
# gives it one), otherwise ROOT/console.
set -e
R=$1
SHARE=${2:--}
[ $# -ge 2 ] && shift 2 || shift $#
M=$R/merged
mount -t overlay overlay -o "lowerdir=/,upperdir=$R/upper,workdir=$R/work" "$M"
find "$M/etc/systemd/system" -mindepth 2 -path '*.wants/*' -delete
ln -sf /dev/null "$M/etc/systemd/system/console-getty.service"
ln -sf /lib/systemd/system/multi-user.target "$M/etc/systemd/system/default.target"
mkdir -p "$M/etc/systemd/system/multi-user.target.wants"
for unit in "$@"; do
  ln -sf "/etc/systemd/system/$unit" "$M/etc/systemd/system/multi-user.target.wants/$unit"
done
mount -t proc proc "$M/proc"
mount -t sysfs -o ro sysfs "$M/sys"
# Mounted inside the new cgroup namespace: its root is the caller's cgroup.
mount -t cgroup2 cgroup2 "$M/sys/fs/cgroup"
mount -t tmpfs -o mode=0755 tmpfs "$M/dev"
for d in null zero full random urandom tty; do
  touch "$M/dev/$d"
  mount --bind "/dev/$d" "$M/dev/$d"
done
mkdir -p "$M/dev/pts" "$M/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666 devpts "$M/dev/pts"
ln -s pts/ptmx "$M/dev/ptmx"
mount -t tmpfs tmpfs "$M/dev/shm"
touch "$M/dev/console"
if tty -s; then
  mount --bind "$(tty)" "$M/dev/console"
else
  touch "$R/console"
  mount --bind "$R/console" "$M/dev/console"
fi
mount -t tmpfs -o mode=0755 tmpfs "$M/run"
mount -t tmpfs -o mode=1777 tmpfs "$M/tmp"
if [ "$SHARE" != - ]; then
  mkdir -p "$M/srv/vigil-test"
  mount --bind -o ro "$SHARE" "$M/srv/vigil-test"
fi
exec chroot "$M" /usr/bin/env -i container=vigil-test /lib/systemd/systemd --system --show-status=yes
