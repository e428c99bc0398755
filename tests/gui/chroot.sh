#!/usr/bin/env bash
# The recipe of a GUI-test chroot: a minimal Debian SUITE in DIR with Debian's own Blender,
# a virtual screen and the tools that drive it. ./dev test-gui caches DIR under the sha1 of
# this file and SUITE, so editing this recipe rebuilds the chroot.
#   tests/gui/chroot.sh SUITE DIR      (as root; SUITE trixie = Blender 4.3, sid = Blender 5.2)
set -euo pipefail
suite=${1:?usage: chroot.sh SUITE DIR} dir=${2:?usage: chroot.sh SUITE DIR}
mirror=${STYLIZE_GUI_MIRROR:-http://deb.debian.org/debian}
packages=(blender xvfb xauth imagemagick xdotool mesa-utils)
# sid: Blender 5.2's own extensions add-on imports cattrs and requests (a traceback at start-up without them)
[ "$suite" = sid ] && packages+=(python3-cattr python3-requests)
command -v debootstrap >/dev/null || apt-get install -y -qq debootstrap >/dev/null
debootstrap --variant=minbase "$suite" "$dir" "$mirror" >"$dir.debootstrap.log" 2>&1 \
    || { tail -20 "$dir.debootstrap.log" >&2; exit 1; }
ln -sf /proc/self/mounts "$dir/etc/mtab"  # Blender lists the mounted file systems
# sid's Release file can be past its Valid-Until date
echo 'Acquire::Check-Valid-Until "false";' > "$dir/etc/apt/apt.conf.d/99stylize-gui"
chroot "$dir" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
    sh -c "apt-get update -qq && apt-get install -y -qq --no-install-recommends ${packages[*]} && apt-get clean" \
    >"$dir.apt.log" 2>&1 || { tail -20 "$dir.apt.log" >&2; exit 1; }
chroot "$dir" blender --version | head -1
