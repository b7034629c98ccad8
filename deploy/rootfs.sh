# Sourced by deploy/build-images.sh and sandbox_images/python/build.sh: a Debian root file system
# made by debootstrap and imported as a docker image, without ever archiving the host's /proc,
# /sys or /dev, and without leaving a mount behind on any exit path.
#
# Why this is needed: debootstrap mounts proc and sysfs inside the target while it configures
# packages (and binds the host's /dev inside some containers). It unmounts them in its own exit
# handler, but not always: a failed or interrupted run, a mount stacked twice, or a package
# script that leaves a process running in the chroot keeps them mounted. A plain
# `tar -C rootfs .` then archives the host's /proc and /sys into the image (tens of thousands of
# entries, PCI configuration space included), and a plain `rm -rf rootfs` deletes through them.
#
# The caller defines log() and die() and passes DOCKER (docker command) in the environment.

# Device nodes and links debootstrap itself creates in /dev (setup_devices_simple), which older
# base images carry; anything else there came from the host.
ROOTFS_DEBOOTSTRAP_DEV='console fd full null ptmx pts random shm stderr stdin stdout'
ROOTFS_DEBOOTSTRAP_DEV+=' tty urandom zero'

rootfs_mounts() {  # rootfs_mounts DIR: mount points at or below DIR, deepest first
    # /proc/self/mountinfo field 5 is the mount point, with blanks escaped as \040 etc.
    awk -v dir="$1" '{
        path = $5
        gsub(/\\040/, " ", path); gsub(/\\011/, "\t", path); gsub(/\\134/, "\\", path)
        if (path == dir || index(path, dir "/") == 1) print path
    }' /proc/self/mountinfo | sort -r
}

rootfs_release() {  # rootfs_release DIR: stop what runs chrooted in DIR, unmount all below it
    local dir=$1 entry root mount
    [ -d "$dir" ] || return 0
    dir=$(cd "$dir" && pwd -P)
    # A daemon a package script started inside the chroot keeps its mounts busy.
    for entry in /proc/[0-9]*; do
        root=$(readlink "$entry/root" 2>/dev/null) || continue
        case "$root" in
            "$dir" | "$dir"/*)
                log "stopping pid ${entry#/proc/}, left running in $dir by a package script"
                kill -KILL "${entry#/proc/}" 2>/dev/null || true ;;
        esac
    done
    while IFS= read -r mount; do
        [ -n "$mount" ] || continue
        log "unmounting $mount"
        umount "$mount" 2>/dev/null || umount --lazy "$mount" 2>/dev/null || true
    done < <(rootfs_mounts "$dir")
    [ -z "$(rootfs_mounts "$dir")" ]
}

rootfs_remove() {  # rootfs_remove DIR: delete DIR, never crossing into a mounted file system
    [ -e "$1" ] || return 0
    if ! rootfs_release "$1"; then
        log "file systems are still mounted below $1; not deleting it"
        return 1
    fi
    rm -rf --one-file-system "$1"
}

rootfs_debootstrap() {  # rootfs_debootstrap SUITE PACKAGES DIR MIRROR LOG
    command -v debootstrap >/dev/null || die "debootstrap is missing: apt-get install debootstrap"
    [ "$(id -u)" = 0 ] || die "debootstrap needs root"
    rootfs_remove "$3" || die "cannot clear $3"
    debootstrap --variant=minbase --include="$2" "$1" "$3" "$4" >"$5" 2>&1 \
        || { rootfs_release "$3" || true; die "debootstrap failed; see $5"; }
    rootfs_release "$3" || die "cannot unmount what debootstrap left mounted below $3"
    # A build stage only: no package caches, lists or documentation.
    rm -rf "$3"/var/cache/apt/* "$3"/var/lib/apt/lists/* "$3"/usr/share/doc \
        "$3"/usr/share/man "$3"/usr/share/info "$3"/usr/share/locale
}

rootfs_archive() {  # rootfs_archive DIR TARBALL: DIR as a tarball, /proc, /sys, /dev left empty
    rootfs_release "$1" || die "cannot unmount what is mounted below $1"
    # Three guards: nothing is mounted any more; --one-file-system would not descend into a
    # mount anyway; and the three directories are archived empty (the container runtime
    # mounts its own proc, sysfs and /dev over them).
    tar --create --file "$2" --directory "$1" --one-file-system --numeric-owner \
        --anchored --exclude='./proc/*' --exclude='./sys/*' --exclude='./dev/*' .
    local leaked
    leaked=$(tar --list --file "$2" | grep -cE '^\./(proc|sys|dev)/.' || true)
    [ "$leaked" = 0 ] || die "refusing to import $2: $leaked entries below /proc, /sys or /dev"
}

rootfs_image_pollution() {  # rootfs_image_pollution IMAGE: how many host entries IMAGE holds
    # Counts entries below /proc and /sys, and below /dev anything but debootstrap's own nodes
    # and the three entries `docker export` adds (console, pts, shm). An image imported by an
    # earlier, unguarded build holds the host's /proc here.
    local container count
    container=$("$DOCKER" create --network none "$1" /nonexistent) || return 1
    count=$("$DOCKER" export "$container" | tar --list | awk -v allowed="$ROOTFS_DEBOOTSTRAP_DEV" '
        BEGIN { n = split(allowed, names, " "); for (i = 1; i <= n; i++) ok[names[i]] = 1 }
        {
            sub(/^\.?\//, "")
            if ($0 ~ /^(proc|sys)\/./) bad++
            else if ($0 ~ /^dev\/./) { name = $0; sub(/^dev\//, "", name); sub(/\/.*$/, "", name)
                                       if (!(name in ok)) bad++ }
        }
        END { print bad + 0 }')
    "$DOCKER" rm "$container" >/dev/null 2>&1 || true
    echo "$count"
}

rootfs_import() {  # rootfs_import DIR IMAGE [--change ...]: archive DIR, check it, import it
    local dir=$1 image=$2 tarball
    shift 2
    tarball="$dir.tar"
    rootfs_archive "$dir" "$tarball"
    "$DOCKER" import "$@" "$tarball" "$image" >/dev/null
    rm -f "$tarball"
    local pollution
    pollution=$(rootfs_image_pollution "$image") || die "cannot inspect the new image $image"
    [ "$pollution" = 0 ] || die "the new image $image holds $pollution host entries"
}
