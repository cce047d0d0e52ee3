#!/bin/bash
# Make the root filesystem of strata/postgres:15 in $OUT: Debian $SUITE (minbase) with $PACKAGES, stripped. Runs as
# root (debootstrap, chroot). The image's Dockerfile adds the entrypoint and the metadata over it.
# env: OUT (the rootfs to make; must not exist), WORK (cache of debs and of the pristine debootstrapped rootfs,
#      reused between builds), SUITE, PACKAGES (comma-separated), MIRROR (default: this host's apt mirror).
# Lines starting with "step: " are progress; the rest is the tools' log.
set -euo pipefail
export PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C
: "${OUT:?}" "${WORK:?}" "${SUITE:?}" "${PACKAGES:?}"
step() { echo "step: $*"; }
fail() { echo "error: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || fail "building the postgres image needs root (debootstrap, chroot)"
for tool in debootstrap chroot; do
  command -v "$tool" >/dev/null || fail "$tool is missing: install debootstrap (make install)"
done
# the Debian mirror this host's apt already uses (deb822 "URIs:" or one-line "deb URL")
MIRROR=${MIRROR:-$(awk '/^URIs:/{print $2; exit} /^deb /{print $2; exit}' \
    /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null || true)}
[ -n "$MIRROR" ] || fail "no Debian mirror found in /etc/apt: set MIRROR"
OUT=$(realpath -m "$OUT"); WORK=$(realpath -m "$WORK"); mkdir -p "$WORK/debs"
[ ! -e "$OUT" ] || fail "$OUT exists"

# The debootstrapped rootfs is kept pristine in WORK (one per suite and package list); each build strips a copy.
BASE=$WORK/debootstrap-$SUITE-$(echo "$PACKAGES" | sha256sum | cut -c1-12)
if [ ! -d "$BASE" ]; then
  step "debootstrap $SUITE with $PACKAGES from $MIRROR"
  find "$WORK" -maxdepth 1 -name 'debootstrap-*' -exec rm -rf {} +
  debootstrap --variant=minbase --cache-dir="$WORK/debs" --include="$PACKAGES" "$SUITE" "$BASE.partial" "$MIRROR"
  rm -f "$BASE.partial"/var/cache/apt/archives/*.deb   # copies of those in $WORK/debs
  mv "$BASE.partial" "$BASE"
fi
step "copy the rootfs"
cp -a "$BASE" "$OUT"
R=$OUT

step "strip the rootfs"
# postgresql-15's postinst made a cluster "main" and ssl-cert a snakeoil key pair: every container initialises its own
# cluster on its volume, and no key may be shared by every image.
rm -rf "$R"/etc/postgresql/* "$R"/var/lib/postgresql/* "$R"/var/log/postgresql/*
rm -f "$R"/etc/ssl/private/ssl-cert-snakeoil.key "$R"/etc/ssl/certs/ssl-cert-snakeoil.pem
# JIT (LLVM and Z3: 130 MB, two fifths of the image) pays only for long analytic queries, never in a container of
# 128 MiB: its provider goes, and postgres runs without it (jit is off in the cluster's configuration too).
chroot "$R" dpkg --purge --force-depends libllvm14 libz3-4 >/dev/null
rm -rf "$R"/usr/lib/postgresql/*/lib/llvmjit* "$R"/usr/lib/postgresql/*/lib/bitcode
# docs, translations, apt's lists and caches; and the locales' sources (i18n): clusters use C.UTF-8, built into glibc
rm -rf "$R"/usr/share/{doc,man,info,locale,lintian,i18n}/* "$R"/var/cache/apt/* "$R"/var/lib/apt/lists/* \
  "$R"/var/cache/debconf/*-old "$R"/var/lib/dpkg/*-old "$R"/var/log/*.log "$R"/var/log/apt/* "$R"/tmp/* "$R"/run/adduser
# The server's lock file and Unix socket go to /tmp (the platform's tmpfs under a read-only root): the clients'
# default socket directory, /run/postgresql, leads there.
rm -rf "$R/run/postgresql"; ln -s /tmp "$R/run/postgresql"
# The volume is mounted here; PGDATA is a directory of it (initdb refuses a volume's root, with its lost+found).
install -d -m 0700 "$R/var/lib/postgresql/data"
chroot "$R" chown postgres:postgres /var/lib/postgresql /var/lib/postgresql/data
echo 'nameserver 127.0.0.1' > "$R/etc/resolv.conf"; echo localhost > "$R/etc/hostname"
step "postgres is uid $(chroot "$R" id -u postgres) gid $(chroot "$R" id -g postgres)"
step "done: $(du -sh "$R" | cut -f1)"
