#!/bin/sh
# pyro test host (L1): main script, run by busybox init (PID 1) as the
# sysinit action of the initramfs that tests/vmhost/run builds. It is the
# same for every run; what a run wants (shares, disks, environment, command)
# comes from the run's spec file, $VMHOST_RUN/spec.sh on the host's /tmp,
# which is shared into L1 at the same path.
#
# Stage markers for the host go to the serial console as lines
# "@@VMHOST <word> ...". The command's stdout/stderr and the exit status go
# over virtio-serial ports (vmhost.out, vmhost.err, vmhost.ctl; vmhost.in
# with --stdio). Everything here is busybox sh.

export PATH=/sbin:/bin:/usr/sbin:/usr/bin
umask 022

mark() { echo "
@@VMHOST $*" >/dev/console; }
die() {
	mark "fail $*"
	sync
	poweroff -f
	sleep 2
	reboot -f
}

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mark init

VMHOST_RUN=
VMHOST_STDIO=0
for a in $(cat /proc/cmdline); do
	case "$a" in
	vmhost.run=*) VMHOST_RUN=${a#vmhost.run=} ;;
	vmhost.stdio=*) VMHOST_STDIO=${a#vmhost.stdio=} ;;
	esac
done
[ -n "$VMHOST_RUN" ] || die "no vmhost.run= on the kernel command line"

while read -r m; do
	[ -n "$m" ] || continue
	insmod "/lib/modules/vmhost/$m" || die "insmod $m failed"
done </lib/modules/vmhost/order
mark modules

mkdir -p /dev/pts /dev/shm /run /var/lib/pyro /var/lib/pyro-envs /root /sys/fs/cgroup
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
mount -t tmpfs -o mode=755 tmpfs /run
mount -t cgroup2 cgroup2 /sys/fs/cgroup 2>/dev/null
ip link set lo up 2>/dev/null
hostname vmhost
ulimit -n 65536 2>/dev/null

# Retry for up to ~10 s: devices can appear a little after insmod returns.
retry() {
	i=0
	while ! "$@" 2>/dev/null; do
		i=$((i + 1))
		[ $i -lt 200 ] || return 1
		sleep 0.05
	done
}

# The host's /tmp first: the run's spec lives there.
mkdir -p /tmp
retry mount -t virtiofs vmhost-tmp /tmp || die "mounting the host's /tmp (virtiofs tag vmhost-tmp) failed"
[ -r "$VMHOST_RUN/spec.sh" ] || die "$VMHOST_RUN/spec.sh is not readable inside L1"

vmhost_share() { # TAG PATH
	mkdir -p "$2" || die "mkdir $2 failed"
	retry mount -t virtiofs "$1" "$2" || die "mounting $2 (virtiofs tag $1) failed"
}

# Finds the block device whose virtio serial is $1; prints /dev/vdX.
blk_by_serial() {
	for d in /sys/block/vd*; do
		[ -e "$d/serial" ] || continue
		if [ "$(cat "$d/serial")" = "$1" ]; then
			echo "/dev/${d##*/}"
			return 0
		fi
	done
	return 1
}

# Finds the virtio-serial port named $1; prints /dev/vportNpM.
port_by_name() {
	for d in /sys/class/virtio-ports/*; do
		[ -e "$d/name" ] || continue
		if [ "$(cat "$d/name")" = "$1" ]; then
			echo "/dev/${d##*/}"
			return 0
		fi
	done
	return 1
}

VMHOST_CWD=/
VMHOST_ENVDISK=0
vmhost_shares() { :; }
vmhost_command() { exit 127; }
. "$VMHOST_RUN/spec.sh" || die "sourcing $VMHOST_RUN/spec.sh failed"
vmhost_shares

dev=
retry eval 'dev=$(blk_by_serial vmhost-scratch)' || die "scratch disk (serial vmhost-scratch) not found"
mount -t ext4 -o noinit_itable,nodiscard "$dev" /var/lib/pyro || die "mounting the scratch disk $dev failed"
if [ "$VMHOST_ENVDISK" = 1 ]; then
	retry eval 'dev=$(blk_by_serial vmhost-envs)' || die "environments disk (serial vmhost-envs) not found"
	mount -t ext4 -o noinit_itable "$dev" /var/lib/pyro-envs || die "mounting the environments disk $dev failed"
	ln -s /var/lib/pyro-envs /var/lib/pyro/environments
else
	mkdir -p /var/lib/pyro/environments
fi

[ -c /dev/kvm ] || die "/dev/kvm is missing after loading kvm-amd ($(dmesg | grep -i -e kvm -e svm | tail -n 3 | tr '\n' ' '))"
[ -c /dev/net/tun ] || mark "note /dev/net/tun is missing"

OUT= ERR= CTL= IN=/dev/null
retry eval 'OUT=$(port_by_name vmhost.out)' || die "virtio-serial port vmhost.out not found"
retry eval 'ERR=$(port_by_name vmhost.err)' || die "virtio-serial port vmhost.err not found"
retry eval 'CTL=$(port_by_name vmhost.ctl)' || die "virtio-serial port vmhost.ctl not found"
if [ "$VMHOST_STDIO" = 1 ]; then
	retry eval 'IN=$(port_by_name vmhost.in)' || die "virtio-serial port vmhost.in not found"
fi
exec 3<>"$CTL" || die "opening $CTL failed"
# One idle VM for L1's whole life, so starting and stopping VMs never
# live-patches L1's scheduler (see tests/vmhost/kvmhold.c).
mkfifo /run/kvmhold
/bin/vmhost-kvmhold >/run/kvmhold 2>/dev/console 3>&- &
read -r held </run/kvmhold || die "vmhost-kvmhold could not hold a VM (see the console above)"
rm -f /run/kvmhold
mark kvm "nested=$(cat /sys/module/kvm_amd/parameters/nested 2>/dev/null)"

# Relays: command -> fifo -> tee -> virtio port, with a byte count on the
# side so the host knows when it has everything (ports are not ordered
# against each other, and closing a port is not visible on the host).
R=/run/vmhost
mkdir -p $R
mkfifo $R/o $R/o2 $R/e $R/e2
tee "$OUT" <$R/o >$R/o2 &
tee_o=$!
wc -c <$R/o2 >$R/o.n &
wc_o=$!
tee "$ERR" <$R/e >$R/e2 &
tee_e=$!
wc -c <$R/e2 >$R/e.n &
wc_e=$!

# Kernel and module text symbols, for the host to name where the CPUs of
# a wedged L1 are stuck.
grep ' [tT] ' /proc/kallsyms >"$VMHOST_RUN/kallsyms" 2>/dev/null &

echo start >&3
mark start
# Heartbeat: the harness treats a long silence as a wedged L1 kernel.
(
	while :; do
		sleep 10
		echo alive >&3
	done
) &
heartbeat=$!
(
	cd "$VMHOST_CWD" 2>/dev/null || {
		echo "vmhost: cannot cd to $VMHOST_CWD inside the test host" >&2
		exit 126
	}
	vmhost_command
) <"$IN" >$R/o 2>$R/e
rc=$?
kill $heartbeat 2>/dev/null

# A background process of the command may keep stdout open: give the
# relays a few seconds, then cut them off (the counts become unknown).
(
	sleep 5
	kill $tee_o $tee_e 2>/dev/null
) &
watchdog=$!
wait $tee_o
st_o=$?
wait $tee_e
st_e=$?
wait $wc_o $wc_e
kill $watchdog 2>/dev/null
n_o=$(cat $R/o.n 2>/dev/null)
n_e=$(cat $R/e.n 2>/dev/null)
[ $st_o -lt 128 ] && [ -n "$n_o" ] || n_o=-
[ $st_e -lt 128 ] && [ -n "$n_e" ] || n_e=-

sync
echo "exit $rc $n_o $n_e" >&3
mark "exit $rc $n_o $n_e"
read -r -t 60 ack <&3
sync
poweroff -f
sleep 2
reboot -f
