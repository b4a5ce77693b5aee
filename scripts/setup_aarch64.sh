#!/usr/bin/env bash
# Build an emulated aarch64 environment for `sparsecc check --mtriple aarch64-linux-gnu` (run by `make aarch64-env`).
#
# Installs qemu-user and the aarch64 cross compiler (apt, needs root), then assembles, outside the repository,
# an aarch64 root folder: Debian's arm64 Python 3.11 and the C libraries it needs (apt-get download +
# dpkg-deb -x, nothing installed on the host) plus the aarch64 wheels of TVM and its dependencies unpacked
# onto that Python's site-packages. The result runs as `qemu-aarch64 -L ROOT ROOT/usr/bin/python3.11`.
#
# Usage: scripts/setup_aarch64.sh [ROOT]   (default: $SPARSECC_AARCH64_ROOT or ~/.cache/sparsecc/aarch64)
# Idempotent: a finished root (marked by ROOT/.sparsecc-ready) is checked and left alone.
set -euo pipefail

ROOT="${1:-${SPARSECC_AARCH64_ROOT:-${XDG_CACHE_HOME:-$HOME/.cache}/sparsecc/aarch64}}"
PYTHON="${PYTHON:-python3}"   # the host Python whose pip downloads the wheels; its TVM pins the versions
SITE="$ROOT/usr/lib/python3/dist-packages"  # on the arm64 Python's default sys.path (Debian layout)
READY="$ROOT/.sparsecc-ready"

sudo_if_needed() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# 1. host tools: the emulator and the cross compiler/linker
if ! command -v qemu-aarch64 >/dev/null || ! command -v aarch64-linux-gnu-g++ >/dev/null \
   || ! dpkg --print-foreign-architectures | grep -qx arm64; then
  sudo_if_needed dpkg --add-architecture arm64
  sudo_if_needed apt-get update -qq
  sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-user g++-aarch64-linux-gnu
fi

# the device side needs only TVM's runtime library (as on a board): TVM_USE_RUNTIME_LIB=1 skips the compiler's
check() { TVM_USE_RUNTIME_LIB=1 qemu-aarch64 -L "$ROOT" "$ROOT/usr/bin/python3.11" -c "import tvm, tvm.rpc, cloudpickle, psutil; print('aarch64 python', __import__('sys').version.split()[0], 'tvm', tvm.__version__)"; }

if [ -f "$READY" ] && qemu-aarch64 -L "$ROOT" "$ROOT/usr/bin/python3.11" -c "import sys"; then
  echo "aarch64 environment ready in $ROOT"
  exit 0
fi

# 2. an arm64 Python 3.11 and the shared libraries it and the wheels load
DEBS="python3.11-minimal libpython3.11-minimal libpython3.11-stdlib libc6 libstdc++6 libgcc-s1 zlib1g libffi8
      libexpat1 libssl3 libbz2-1.0 liblzma5 libsqlite3-0 libuuid1 libncursesw6 libtinfo6 libreadline8
      libnsl2 libtirpc3 libgssapi-krb5-2 libkrb5-3 libk5crypto3 libkrb5support0 libcom-err2 libkeyutils1
      libcrypt1 libdb5.3 media-types"
# start from scratch, but never delete a folder this script did not make
if [ -d "$ROOT" ] && [ -n "$(ls -A "$ROOT")" ] && [ ! -f "$ROOT/.sparsecc-root" ]; then
  echo "setup_aarch64: $ROOT exists and was not made by this script; give another folder" >&2
  exit 2
fi
rm -rf "$ROOT" && mkdir -p "$ROOT" "$SITE" && touch "$ROOT/.sparsecc-root"
DL="$(mktemp -d)" && chmod a+rwx "$DL"  # apt-get download runs as _apt
trap 'rm -rf "$DL"' EXIT
pkgs=()
for p in $DEBS; do
  if [ "$p" = media-types ]; then pkgs+=("$p"); else pkgs+=("$p:arm64"); fi
done
(cd "$DL" && apt-get download -qq "${pkgs[@]}")
for deb in "$DL"/*.deb; do dpkg-deb -x "$deb" "$ROOT"; done

# 3. aarch64 wheels at the versions the host has (TVM, its FFI and numpy must match what compiled the model)
version() { "$PYTHON" -c "import importlib.metadata as m; print(m.version('$1'))"; }
WHEELS=("apache-tvm==$(version apache-tvm)" "apache-tvm-ffi==$(version apache-tvm-ffi)"
        "numpy==$(version numpy)" ml_dtypes typing-extensions cloudpickle psutil)
"$PYTHON" -m pip download --quiet --dest "$DL/wheels" --platform manylinux_2_28_aarch64 \
  --platform manylinux_2_17_aarch64 --platform manylinux2014_aarch64 --only-binary=:all: \
  --python-version 3.11 --implementation cp "${WHEELS[@]}"
for whl in "$DL"/wheels/*.whl; do "$PYTHON" -m zipfile -e "$whl" "$SITE"; done
# byte-compile once with the host's Python 3.11 (same bytecode as the arm64 3.11): imports under emulation
# then skip the compiler, which halves the time of `import tvm` there
"$PYTHON" -m compileall -q -j 0 -s "$ROOT" -p / "$ROOT/usr/lib/python3.11" "$SITE" >/dev/null || true

check
touch "$READY"
echo "aarch64 environment ready in $ROOT"
