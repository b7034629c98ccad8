#!/usr/bin/env bash
# Builds the azr-verify service image (deploy/Dockerfile) with no registry by default:
#   1. a Debian base with python3, python3-venv, bubblewrap and redis-server made by debootstrap
#      and imported with `docker import` (deploy/rootfs.sh: the host's /proc, /sys and /dev never
#      reach it, nothing stays mounted, and a base polluted by an older build is rebuilt),
#   2. a wheelhouse of the project and its `service` extra (pip on this machine, with its own
#      index, proxy and certificate settings), completed with whatever the base's Python needs
#      beyond this one's (environment markers); the docker build downloads nothing,
#   3. `docker build` of deploy/Dockerfile FROM that base, then a smoke test of the image.
# A no-op (about a second) when IMAGE_TAG already carries the label azr-verify.build-hash of the
# current inputs: the project's source, pyproject.toml, README.md, the Dockerfile and the base.
# The sandbox image of the docker backend is built by sandbox_images/python/build.sh.
#
# Usage: bash deploy/build-images.sh [IMAGE_TAG]            (default azr-verify:latest)
# Environment:
#   AZR_SERVICE_BASE=python:3.11-slim-bookworm  build FROM a pullable image instead
#   AZR_DEBIAN_MIRROR=URL                       mirror for debootstrap (default: apt sources)
#   AZR_DEBIAN_SUITE=bookworm                   Debian suite for debootstrap
#   AZR_BUILD_FORCE=1                           rebuild even when the label says up to date
#   PIP_FIND_LINKS / PIP_INDEX_URL              where pip finds wheels (e.g. an offline dir)
set -euo pipefail

case "${1:-}" in
    -h | --help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
esac

TAG=${1:-azr-verify:latest}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
BUILD=$HERE/.build
ROOTFS=$BUILD/rootfs
SUITE=${AZR_DEBIAN_SUITE:-bookworm}
# libseccomp2, which compiles the zygotes' seccomp filter, comes with minbase (apt needs it).
PACKAGES=python3,python3-venv,bubblewrap,redis-server,ca-certificates
BASE_TAG=azr-verify-service-base:$SUITE
# What the base is made of and how (bump the number when rootfs.sh changes what it archives):
# a base whose label differs is rebuilt.
BASE_RECIPE=$(printf '%s' "2 $SUITE $PACKAGES" | sha256sum | cut -c1-16)
DOCKER=${DOCKER:-docker}
PYTHON=${PYTHON:-$REPO/.venv/bin/python}
[ -x "$PYTHON" ] || PYTHON=python3
START=$(date +%s)

log() { printf 'build-images.sh: [%3d s] %s\n' "$(( $(date +%s) - START ))" "$*" >&2; }
die() { log "$*"; exit 1; }

# shellcheck source=deploy/rootfs.sh
. "$HERE/rootfs.sh"

cleanup() {  # every exit path: success, failure, Ctrl-C, SIGTERM
    local status=$?
    rootfs_remove "$ROOTFS" || status=1
    rm -f "$ROOTFS.tar"
    rm -rf "$BUILD/context"
    exit "$status"
}

label_of() {  # label_of IMAGE LABEL -> the label's value, empty when absent or no image
    "$DOCKER" image inspect --format "{{ index .Config.Labels \"$2\" }}" "$1" 2>/dev/null || true
}

mirror() {  # the first Debian mirror named in the apt sources
    local line
    line=$(grep -hE '^(deb |URIs:)' /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null \
           | grep -oE 'https?://[^ ]+/debian/?' | grep -v security | head -n 1 || true)
    echo "${line:-http://deb.debian.org/debian}"
}

inputs_hash() {  # everything that ends up in the image, by path and content
    {
        (cd "$REPO" && find service client trainer_adapter pyproject.toml README.md \
             -type f ! -name '*.pyc' ! -path '*/__pycache__/*' -print0 \
             | LC_ALL=C sort -z | xargs -0 sha256sum)
        sha256sum "$HERE/Dockerfile" | cut -d' ' -f1
        printf '%s\n' "$1"
    } | sha256sum | cut -d' ' -f1
}

wheelhouse() {  # the project and its `service` dependencies, as wheels
    log "building the wheelhouse"
    rm -rf "$BUILD/context"
    mkdir -p "$BUILD/context/wheels"
    "$PYTHON" -m pip wheel --quiet --wheel-dir "$BUILD/context/wheels" "$REPO[service]" \
        >"$BUILD/pip.log" 2>&1 \
        || { tail -n 20 "$BUILD/pip.log" >&2; die "pip wheel failed; see $BUILD/pip.log"; }
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
            --dest "$BUILD/context/wheels" "$missing" >>"$BUILD/pip.log" 2>&1 \
            || { tail -n 20 "$BUILD/pip.log" >&2; die "pip download failed; see $BUILD/pip.log"; }
    done
    die "the wheelhouse is still incomplete; see: docker run --rm $1 ..."
}

ensure_base() {  # the debootstrapped base: reused when clean, rebuilt otherwise
    if "$DOCKER" image inspect "$BASE_TAG" >/dev/null 2>&1; then
        local pollution
        pollution=$(rootfs_image_pollution "$BASE_TAG") || die "cannot inspect $BASE_TAG"
        if [ "$pollution" != 0 ]; then
            log "$BASE_TAG holds $pollution entries of the host's /proc, /sys or /dev" \
                "(left by an earlier build); rebuilding it"
        elif [ "$(label_of "$BASE_TAG" azr-verify.service-base)" != "$BASE_RECIPE" ]; then
            log "$BASE_TAG was made by an older recipe; rebuilding it"
        else
            log "reusing $BASE_TAG"
            return
        fi
        "$DOCKER" image rm --force "$BASE_TAG" >/dev/null
    fi
    local url=${AZR_DEBIAN_MIRROR:-$(mirror)}
    log "debootstrap $SUITE from $url (a few minutes)"
    rootfs_debootstrap "$SUITE" "$PACKAGES" "$ROOTFS" "$url" "$BUILD/debootstrap.log"
    log "importing $BASE_TAG"
    rootfs_import "$ROOTFS" "$BASE_TAG" --change "LABEL azr-verify.service-base=$BASE_RECIPE"
    rootfs_remove "$ROOTFS"
}

smoke_test() {  # fail here, not in a deployment, when the image cannot do its three jobs
    "$DOCKER" run --rm --network none --entrypoint sh "$1" -c \
        'azr-verify --help >/dev/null && command -v bwrap >/dev/null \
         && redis-server --version >/dev/null && [ "$(id -u)" != 0 ]' \
        || die "the new image $1 fails its smoke test (azr-verify, bwrap, redis-server, non-root)"
}

remove_if_untagged() {  # the image this build replaced, unless something else still names it
    [ -n "$1" ] || return 0
    if [ "$("$DOCKER" image inspect --format '{{len .RepoTags}}' "$1" 2>/dev/null)" = 0 ]; then
        "$DOCKER" image rm "$1" >/dev/null 2>&1 || true
    fi
}

main() {
    "$DOCKER" info >/dev/null 2>&1 || die "cannot reach dockerd (start it, e.g. make dockerd)"
    mkdir -p "$BUILD"
    if command -v flock >/dev/null; then  # two builds at once: the second waits, then no-ops
        exec 9>"$BUILD/lock"
        flock 9
    fi
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    local base=${AZR_SERVICE_BASE:-$BASE_TAG}
    local build_hash  # the base's recipe too: an image FROM an older base is rebuilt
    build_hash=$(inputs_hash "$base ${AZR_SERVICE_BASE:+pulled}${AZR_SERVICE_BASE:-$BASE_RECIPE}")
    if [ "${AZR_BUILD_FORCE:-0}" != 1 ] \
        && [ "$(label_of "$TAG" azr-verify.build-hash)" = "$build_hash" ]; then
        log "$TAG is up to date (build hash ${build_hash:0:12})"
        return
    fi
    [ -n "${AZR_SERVICE_BASE:-}" ] || ensure_base
    wheelhouse
    complete_wheelhouse "$base"
    local previous
    previous=$("$DOCKER" image inspect --format '{{.Id}}' "$TAG" 2>/dev/null || true)
    log "docker build $TAG FROM $base"
    "$DOCKER" build --quiet --build-arg "BASE=$base" \
        --label "azr-verify.build-hash=$build_hash" \
        -t "$TAG" "$BUILD/context" >"$BUILD/docker-build.log" 2>&1 \
        || { tail -n 20 "$BUILD/docker-build.log" >&2; die "docker build failed"; }
    smoke_test "$TAG"
    remove_if_untagged "$previous"
    log "built $TAG (build hash ${build_hash:0:12}) in $(( $(date +%s) - START )) s"
}

main "$@"
