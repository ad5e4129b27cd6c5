#!/usr/bin/env bash
# Build (idempotently, under $ARM_CACHE) an aarch64 Python 3.11 that runs under qemu user-mode emulation,
# with aarch64 wheels of the runtime's own dependencies and the project's runtime: no torch.
#
#   rootfs/   Debian arm64 packages unpacked with dpkg -x (no dpkg architecture change on the host)
#   site/     aarch64 wheels + vlm-export, installed with pip --target
#
# Mirrors come from the host's own apt sources. See ../../DESIGN.md and shared/arm-notes.md.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CACHE=${ARM_CACHE:-$ROOT/.cache/arm}
HOST_PYTHON=${HOST_PYTHON:-$ROOT/.venv/bin/python}
ROOTFS=$CACHE/rootfs
SITE=$CACHE/site
APT=$CACHE/apt
DEBS="libc6 libgcc-s1 libstdc++6 zlib1g libexpat1 libssl3 libffi8 libbz2-1.0 liblzma5
      python3.11-minimal libpython3.11-minimal libpython3.11-stdlib"
# the runtime's dependencies (pyproject's base install), resolved for aarch64 by pip
RUNTIME_DEPS=$("$HOST_PYTHON" - "$ROOT/pyproject.toml" <<'PY'
import sys, tomllib
print(" ".join(tomllib.load(open(sys.argv[1], "rb"))["project"]["dependencies"]))
PY
)
PLATFORM_ARGS="--platform manylinux_2_28_aarch64 --platform manylinux_2_17_aarch64 --platform manylinux2014_aarch64
               --python-version 3.11 --implementation cp --only-binary=:all:"
log() { echo "· $*" >&2; }

# 1. qemu (Debian's static user-mode build)
if ! command -v qemu-aarch64-static >/dev/null; then
  log "installing qemu-user-static"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-user-static >/dev/null
fi

# 2. arm64 root folder
if [ ! -f "$ROOTFS/.complete" ]; then
  log "fetching Debian arm64 packages into $ROOTFS"
  rm -rf "$ROOTFS" "$APT"
  mkdir -p "$APT/lists/partial" "$APT/cache/archives/partial" "$APT/sources.list.d" "$APT/debs" "$ROOTFS"
  : > "$APT/status"
  for src in /etc/apt/sources.list.d/*.sources; do  # deb822 stanzas, restricted to arm64
    [ -f "$src" ] && sed '/^Architectures:/d; /^Types:/a Architectures: arm64' "$src" > "$APT/sources.list.d/$(basename "$src")"
  done
  if [ -f /etc/apt/sources.list ]; then
    sed -n 's/^deb \(\[[^]]*\] \)\?/deb [arch=arm64] /p' /etc/apt/sources.list > "$APT/sources.list.d/host.list"
  fi
  APT_OPTS=(-o "APT::Architecture=arm64" -o "APT::Architectures=arm64" -o "Dir::State=$APT" -o "Dir::State::Lists=$APT/lists"
            -o "Dir::State::status=$APT/status" -o "Dir::Cache=$APT/cache" -o "Dir::Etc::SourceList=/dev/null"
            -o "Dir::Etc::SourceParts=$APT/sources.list.d" -o "Debug::NoLocking=1")
  apt-get "${APT_OPTS[@]}" update -qq
  (cd "$APT/debs" && apt-get "${APT_OPTS[@]}" download $DEBS >/dev/null)
  for deb in "$APT/debs"/*.deb; do dpkg -x "$deb" "$ROOTFS"; done
  mkdir -p "$ROOTFS/proc"
  # precompiled stdlib halves the emulated interpreter's start-up
  "$HOST_PYTHON" -m compileall -q -j 0 "$ROOTFS/usr/lib/python3.11" >/dev/null 2>&1 || true
  touch "$ROOTFS/.complete"
fi

# 3. aarch64 wheels of the runtime's dependencies
if [ ! -f "$SITE/.complete" ] || [ "$ROOT/pyproject.toml" -nt "$SITE/.complete" ]; then
  log "downloading aarch64 wheels: $RUNTIME_DEPS"
  rm -rf "$SITE" "$CACHE/wheels"
  "$HOST_PYTHON" -m pip download -q $PLATFORM_ARGS -d "$CACHE/wheels" $RUNTIME_DEPS
  "$HOST_PYTHON" -m pip install -q --no-deps --no-index $PLATFORM_ARGS --target "$SITE" "$CACHE/wheels"/*.whl
  touch "$SITE/.complete"
fi

# 4. the project's runtime (pure Python), reinstalled every time so it is current
log "installing vlm-export into $SITE"
rm -rf "$CACHE/project" "$SITE"/vlm_export "$SITE"/vlm_export-*.dist-info
"$HOST_PYTHON" -m pip wheel -q --no-deps --no-build-isolation -w "$CACHE/project" "$ROOT" >/dev/null 2>&1
"$HOST_PYTHON" -m pip install -q --no-deps --no-index $PLATFORM_ARGS --target "$SITE" "$CACHE/project"/*.whl
log "aarch64 environment ready: $CACHE"
