#!/usr/bin/env bash
# Builds the azr-verify sandbox image, with no registry by default:
#   debootstrap a minimal Debian (python3-minimal + its stdlib) -> `docker import` it as a base
#   image -> `docker build` the Dockerfile FROM it, which keeps only the interpreter, its
#   libraries and the runner in one flattened layer.
#
# Usage: bash sandbox_images/python/build.sh [IMAGE_TAG]        (default azr-verify-sandbox:latest)
#
# A no-op when IMAGE_TAG already carries the label azr-verify.build-hash of the current inputs
# (runner.py, Dockerfile, make_rootfs.py, seccomp.json and the base choice).
# Environment:
#   AZR_SANDBOX_BASE=python:3.11-slim   build FROM a pullable image instead of debootstrapping
#   AZR_DEBIAN_MIRROR=URL               mirror for debootstrap (default: from the apt sources)
#   AZR_DEBIAN_SUITE=bookworm           Debian suite for debootstrap
#   AZR_SANDBOX_FORCE=1                 rebuild even when the labels say it is up to date
set -euo pipefail

TAG=${1:-azr-verify-sandbox:latest}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
RUNNER=$REPO/service/sandbox/runner.py
SECCOMP=$REPO/sandbox_images/seccomp.json
BUILD_DIR=$HERE/.build
SUITE=${AZR_DEBIAN_SUITE:-bookworm}
# libpython3-stdlib (not python3.X-minimal) holds ctypes, which the runner needs for prctl.
PACKAGES=python3-minimal,libpython3-stdlib
DOCKER=${DOCKER:-docker}
START=$(date +%s)

log() { printf 'build.sh: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

label_of() {  # label_of IMAGE LABEL -> the label's value, empty when absent or no image
    "$DOCKER" image inspect --format "{{ index .Config.Labels \"$2\" }}" "$1" 2>/dev/null || true
}

find_mirror() {  # the first Debian (non-security) mirror named in the apt sources
    local files=(/etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources)
    local existing=()
    for file in "${files[@]}"; do [ -f "$file" ] && existing+=("$file"); done
    [ ${#existing[@]} -gt 0 ] || { echo http://deb.debian.org/debian; return; }
    {
        awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^https?:\/\//) { print $i; break } }' \
            "${existing[@]}"
        awk 'tolower($1) == "uris:" { for (i = 2; i <= NF; i++) print $i }' "${existing[@]}"
    } | grep -E '/debian/?$' | grep -v security | head -n 1 || echo http://deb.debian.org/debian
}

# shellcheck source=deploy/rootfs.sh
. "$REPO/deploy/rootfs.sh"  # the host's /proc, /sys, /dev never reach the base; no mount left

cleanup() {  # every exit path: success, failure, Ctrl-C, SIGTERM
    local status=$?
    rootfs_remove "$BUILD_DIR/rootfs" || status=1
    rm -f "$BUILD_DIR/rootfs.tar"
    exit "$status"
}

debootstrap_base() {  # debootstrap_base IMAGE: a minimal Debian with Python, imported as IMAGE
    local mirror=${AZR_DEBIAN_MIRROR:-$(find_mirror)}
    log "debootstrap $SUITE from $mirror (about 40 s)"
    rootfs_debootstrap "$SUITE" "$PACKAGES" "$BUILD_DIR/rootfs" "$mirror" \
        "$BUILD_DIR/debootstrap.log"
    rootfs_import "$BUILD_DIR/rootfs" "$1" --change 'LABEL azr-verify.sandbox-base="1"'
    rootfs_remove "$BUILD_DIR/rootfs"
}

base_reusable() {  # base_reusable IMAGE: made by this script and holding nothing of the host
    [ -n "$(label_of "$1" azr-verify.sandbox-base)" ] || return 1
    local pollution
    pollution=$(rootfs_image_pollution "$1") || return 1
    [ "$pollution" = 0 ] && return 0
    log "$1 holds $pollution entries of the host's /proc, /sys or /dev; rebuilding it"
    "$DOCKER" image rm --force "$1" >/dev/null
    return 1
}

remove_if_untagged() {  # the image this build replaced, unless something else still names it
    [ -n "$1" ] || return 0
    local tags
    tags=$("$DOCKER" image inspect --format '{{len .RepoTags}}' "$1" 2>/dev/null || echo gone)
    if [ "$tags" = 0 ]; then
        "$DOCKER" image rm "$1" >/dev/null 2>&1 || true
    fi
}

stage_context() {  # stage_context DIR: only what the Dockerfile copies (not the whole repo)
    rm -rf "$1"
    mkdir -p "$1"
    cp "$HERE/Dockerfile" "$HERE/make_rootfs.py" "$RUNNER" "$1/"
}

main() {
    "$DOCKER" info >/dev/null 2>&1 || die "cannot reach dockerd (start it, e.g. make dockerd)"
    mkdir -p "$BUILD_DIR"
    if command -v flock >/dev/null; then  # two `make test`s at once build once
        exec 9>"$BUILD_DIR/lock"
        flock 9
    fi
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    local base_choice=${AZR_SANDBOX_BASE:-debootstrap:$SUITE:$PACKAGES}
    local runner_sha build_hash
    runner_sha=$(sha256sum "$RUNNER" | cut -d' ' -f1)
    build_hash=$({ cat "$RUNNER" "$HERE/Dockerfile" "$HERE/make_rootfs.py" "$SECCOMP";
                   printf '%s' "$base_choice"; } | sha256sum | cut -d' ' -f1)
    if [ "${AZR_SANDBOX_FORCE:-0}" != 1 ] \
        && [ "$(label_of "$TAG" azr-verify.build-hash)" = "$build_hash" ]; then
        log "$TAG is up to date (build hash ${build_hash:0:12})"
        return
    fi
    local base=${AZR_SANDBOX_BASE:-}
    if [ -z "$base" ]; then
        base=azr-verify-sandbox-base:$SUITE-$(printf '%s' "$base_choice" | sha256sum | cut -c1-12)
        if base_reusable "$base"; then
            log "reusing base image $base"
        else
            debootstrap_base "$base"
        fi
    fi
    stage_context "$BUILD_DIR/context"
    local previous
    previous=$("$DOCKER" image inspect --format '{{.Id}}' "$TAG" 2>/dev/null || true)
    log "docker build $TAG FROM $base"
    "$DOCKER" build --quiet --build-arg "BASE=$base" \
        --label "azr-verify.build-hash=$build_hash" \
        --label "azr-verify.runner-sha256=$runner_sha" \
        -t "$TAG" "$BUILD_DIR/context" >/dev/null
    # Fail here, not in the service, when the interpreter cannot load what the runner needs.
    "$DOCKER" run --rm --network none --read-only --cap-drop ALL "$TAG" \
        python3 -s -S -B -P -c 'import _ctypes, resource, select, json, os; os.pidfd_open' \
        || die "the image's interpreter is missing modules the runner needs"
    remove_if_untagged "$previous"
    log "built $TAG (runner ${runner_sha:0:12}) in $(( $(date +%s) - START )) s"
}

main
