#!/bin/bash
# Build the node VM guest image into $OUT: vmlinuz, initrd.img and base.ext4 (sparse). Runs as root.
# No key or other secret is baked in: each VM gets its SSH identity and hostname at boot from QEMU fw_cfg (rc.start).
# env: OUT (artifacts), WORK (cache of debs and of the debootstrapped rootfs, reused between builds),
#      KFLAVOUR (linux-image-KFLAVOUR), SUITE, PACKAGES (comma-separated), MIRROR (default: this host's apt mirror).
# Lines starting with "step: " are progress; the rest is the tools' log.
set -euo pipefail
export PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C
: "${OUT:?}" "${WORK:?}" "${KFLAVOUR:?}" "${SUITE:?}" "${PACKAGES:?}"
DISK_SIZE=4G
# loaded by the initramfs; virtio_scsi and sd_mod: attached disks (volumes), SCSI disks on a virtio-scsi controller
MODULES="virtio_pci virtio_blk virtio_net virtio_rng virtio_scsi sd_mod ext4 overlay qemu_fw_cfg"
HERE=$(cd "$(dirname "$0")" && pwd)
step() { echo "step: $*"; }
fail() { echo "error: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || fail "building the guest image needs root (debootstrap, chroot)"
for tool in apt-get apt-cache debootstrap dpkg-deb chroot mkfs.ext4 cpio gzip; do
  command -v "$tool" >/dev/null || fail "$tool is missing: install debootstrap, e2fsprogs and cpio (make install)"
done
# the Debian mirror this host's apt already uses (deb822 "URIs:" or one-line "deb URL")
MIRROR=${MIRROR:-$(awk '/^URIs:/{print $2; exit} /^deb /{print $2; exit}' \
    /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null || true)}
[ -n "$MIRROR" ] || fail "no Debian mirror found in /etc/apt: set MIRROR"
OUT=$(realpath -m "$OUT"); WORK=$(realpath -m "$WORK"); mkdir -p "$OUT" "$WORK/debs"

step "kernel package linux-image-$KFLAVOUR"
KPKG=$(apt-cache depends "linux-image-$KFLAVOUR" | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
[ -n "$KPKG" ] || fail "apt knows no linux-image-$KFLAVOUR: run apt-get update"
KVER=${KPKG#linux-image-}
ls "$WORK/debs/${KPKG}"_*.deb >/dev/null 2>&1 ||
  (cd "$WORK/debs" && apt-get download -q -o APT::Sandbox::User=root "$KPKG")
KDEB=$(ls "$WORK/debs/${KPKG}"_*.deb | head -1)

# The debootstrapped rootfs is kept pristine in WORK (one per suite and package list); each build configures a copy.
BASE=$WORK/debootstrap-$SUITE-$(echo "$PACKAGES" | sha256sum | cut -c1-12)
if [ ! -d "$BASE" ]; then
  step "debootstrap $SUITE from $MIRROR"
  find "$WORK" -maxdepth 1 -name 'debootstrap-*' -exec rm -rf {} +
  debootstrap --variant=minbase --cache-dir="$WORK/debs" --include="$PACKAGES" "$SUITE" "$BASE.partial" "$MIRROR"
  mv "$BASE.partial" "$BASE"
fi
R=$WORK/rootfs; IR=$WORK/initramfs
step "copy the rootfs"
rm -rf "$R" "$IR"; cp -a "$BASE" "$R"

step "kernel $KVER"
dpkg-deb --fsys-tarfile "$KDEB" | tar -x --keep-directory-symlink -C "$R"   # dpkg-deb -x would replace /lib
chroot "$R" depmod -a "$KVER"
cp "$R/boot/vmlinuz-$KVER" "$OUT/vmlinuz"
# vmgenid reseeds the RNG of a VM restored from a snapshot (QEMU's -device vmgenid); not every flavour has it
VMGENID=$(sed -n 's/^CONFIG_VMGENID=//p' "$R/boot/config-$KVER")
if [ "$VMGENID" = m ]; then MODULES="$MODULES vmgenid"; fi
step "kernel vmgenid driver: $(case $VMGENID in y) echo built in;; m) echo module;; *) echo absent;; esac)"

step "configure the rootfs"
rm -f "$R"/etc/ssh/ssh_host_*; rm -rf "$R/root/.ssh"   # openssh-server's postinst made host keys: no shared keys
install -m 644 "$HERE/sshd_config" "$R/etc/ssh/sshd_config"
echo localhost > "$R/etc/hostname"; echo '127.0.0.1 localhost' > "$R/etc/hosts"   # rc.start sets the real name
echo 'nameserver 127.0.0.1' > "$R/etc/resolv.conf"   # the guest network is restricted: no DNS
install -d "$R/etc/docker"; echo '{"storage-driver":"overlay2","log-driver":"local"}' > "$R/etc/docker/daemon.json"
# init = busybox init (reaps zombies, runs rc.stop on poweroff); ACPI power button -> busybox acpid -> poweroff
install -d "$R/usr/lib/strata" "$R/etc/acpi/PWRF"; ln -sf /bin/busybox "$R/usr/lib/strata/init"
install -m 755 "$HERE/rc.start" "$HERE/rc.stop" "$R/usr/lib/strata/"
printf '::sysinit:/usr/lib/strata/rc.start\n::shutdown:/usr/lib/strata/rc.stop\n' > "$R/etc/inittab"
printf '#!/bin/sh\nexec /bin/busybox poweroff\n' > "$R/etc/acpi/PWRF/00000080"; chmod 755 "$R/etc/acpi/PWRF/00000080"
rm -rf "$R"/var/cache/apt/archives/*.deb "$R"/var/lib/apt/lists/* "$R"/usr/share/{doc,man,locale}/*

step "initramfs with $MODULES"
mkdir -p "$IR"/{bin,dev,proc,sys,newroot,m}; cp "$R/bin/busybox" "$IR/bin/"; install -m 755 "$HERE/init" "$IR/"
: > "$IR/modules.list"
for m in $MODULES; do   # each module after its dependencies, once; built-in ones need nothing
  deps=$(chroot "$R" modprobe -S "$KVER" --show-depends "$m") || fail "kernel $KVER has no module $m"
  for f in $(echo "$deps" | awk '$1=="insmod"{print $2}'); do
    grep -qx "$(basename "$f")" "$IR/modules.list" || { cp "$R$f" "$IR/m/"; basename "$f" >> "$IR/modules.list"; }
  done
done
(cd "$IR" && find . | cpio -o -H newc --quiet | gzip -1) > "$OUT/initrd.img"

step "ext4 disk ($DISK_SIZE, sparse)"
rm -f "$OUT/base.ext4"; truncate -s "$DISK_SIZE" "$OUT/base.ext4"
mkfs.ext4 -q -F -L strata-node -m 0 -E lazy_itable_init=0,lazy_journal_init=0 -d "$R" "$OUT/base.ext4"
rm -rf "$R" "$IR"
step "done"
