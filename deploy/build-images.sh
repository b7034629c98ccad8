#!/usr/bin/env bash
# Builds the azr-verify service image (deploy/Dockerfile) with no registry by default:
#   1. a Debian base with python3, python3-venv, bubblewrap and redis-server made by debootstrap
#      and imported with `docker import`,
#   2. a wheelhouse of the project and its `service` extra (pip on this machine, with its own
#      index, proxy and certificate settings), completed with whatever the base's Python needs
#      beyond this one's (environment markers); the docker build downloads nothing,
#   3. `docker build` of deploy/Dockerfile FROM that base.
# The sandbox image of the docker backend is built by sandbox_images/python/build.sh.
#
# Usage: bash deploy/build-images.sh [IMAGE_TAG]            (default azr-verify:latest)
# Environment:
#   AZR_SERVICE_BASE=python:3.11-slim-bookworm  build FROM a pullable image instead
#   AZR_DEBIAN_MIRROR=URL                       mirror for debootstrap (default: apt sources)
#   AZR_DEBIAN_SUITE=bookworm                   Debian suite for debootstrap
#   PIP_FIND_LINKS / PIP_INDEX_URL              where pip finds wheels (e.g. an offline dir)
set -euo pipefail

TAG=${1:-azr-verify:latest}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
BUILD=$HERE/.build
SUITE=${AZR_DEBIAN_SUITE:-bookworm}
PACKAGES=python3,python3-venv,bubblewrap,redis-server,ca-certificates
BASE_TAG=azr-verify-service-base:$SUITE
DOCKER=${DOCKER:-docker}
PYTHON=${PYTHON:-$REPO/.venv/bin/python}
[ -x "$PYTHON" ] || PYTHON=python3

log() { printf 'build-images.sh: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

mirror() {  # the first Debian mirror named in the apt sources
    local line
    line=$(grep -hE '^(deb |URIs:)' /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null \
           | grep -oE 'https?://[^ ]+/debian/?' | grep -v security | head -n 1 || true)
    echo "${line:-http://deb.debian.org/debian}"
}

wheelhouse() {  # the project and its `service` dependencies, as wheels
    log "building the wheelhouse"
    rm -rf "$BUILD/context"
    mkdir -p "$BUILD/context/wheels"
    "$PYTHON" -m pip wheel --quiet --wheel-dir "$BUILD/context/wheels" "$REPO[service]"
    cp "$HERE/Dockerfile" "$BUILD/context/Dockerfile"
}

complete_wheelhouse() {  # complete_wheelhouse BASE: add what only the image's Python needs
    # pip resolved environment markers for *this* interpreter; the image's may differ (e.g.
    # redis needs async-timeout on Python < 3.11.3). Ask the image's pip, offline, what is
    # missing and fetch it here, until nothing is.
    local missing
    for _ in 1 2 3 4 5 6 7 8; do
        missing=$("$DOCKER" run --rm --network none --entrypoint sh \
                  -v "$BUILD/context/wheels:/wheels:ro" "$1" -c \
                  "python3 -m venv /tmp/venv >/dev/null && /tmp/venv/bin/pip install --dry-run \
                   --quiet --no-index --find-links /wheels 'azr-verify[service]' 2>&1; true" \
                  | sed -n 's/^ERROR: No matching distribution found for \([^;]*\).*/\1/p' \
                  | head -n 1)
        [ -n "$missing" ] || return 0
        log "adding $missing for the image's Python"
        "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: \
            --dest "$BUILD/context/wheels" "$missing"
    done
    die "the wheelhouse is still incomplete; see: docker run --rm $1 ..."
}

debootstrap_base() {
    if "$DOCKER" image inspect "$BASE_TAG" >/dev/null 2>&1; then
        log "reusing $BASE_TAG"
        return
    fi
    command -v debootstrap >/dev/null || die "debootstrap is missing: apt-get install debootstrap"
    [ "$(id -u)" = 0 ] || die "debootstrap needs root"
    local rootfs=$BUILD/rootfs url=${AZR_DEBIAN_MIRROR:-$(mirror)}
    rm -rf "$rootfs"
    log "debootstrap $SUITE from $url"
    debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$rootfs" "$url" \
        >"$BUILD/debootstrap.log" 2>&1 || die "debootstrap failed; see $BUILD/debootstrap.log"
    rm -rf "$rootfs"/var/cache/apt/* "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/doc \
        "$rootfs"/usr/share/man "$rootfs"/usr/share/locale
    tar -C "$rootfs" -c . | "$DOCKER" import - "$BASE_TAG" >/dev/null
    rm -rf "$rootfs"
}

main() {
    "$DOCKER" info >/dev/null 2>&1 || die "cannot reach dockerd"
    mkdir -p "$BUILD"
    local base=${AZR_SERVICE_BASE:-}
    if [ -z "$base" ]; then
        debootstrap_base
        base=$BASE_TAG
    fi
    wheelhouse
    complete_wheelhouse "$base"
    log "docker build $TAG FROM $base"
    "$DOCKER" build --quiet --build-arg "BASE=$base" -t "$TAG" "$BUILD/context" >/dev/null
    log "built $TAG"
}

main "$@"
