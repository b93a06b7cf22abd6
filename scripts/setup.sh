#!/usr/bin/env bash
# Installs what building and testing Ember needs on a fresh Debian machine, and nothing that
# is already there: Mesa's Vulkan drivers (lavapipe runs burn's wgpu backend without a GPU),
# the wasm32 and aarch64 Rust targets, std's source, qemu-user and an aarch64 linker (the NEON
# kernels' tests), and pip (only to fetch the model).
set -euo pipefail

need_apt=()
if ! ls /usr/share/vulkan/icd.d/lvp_icd*.json >/dev/null 2>&1; then need_apt+=(mesa-vulkan-drivers libvulkan1); fi
if ! python3 -m pip --version >/dev/null 2>&1 && ! command -v pip3 >/dev/null 2>&1; then need_apt+=(python3-pip); fi
# The aarch64 (NEON) kernels' tests: a cross linker and qemu-user to run them (scripts/test).
if ! command -v qemu-aarch64 >/dev/null 2>&1; then need_apt+=(qemu-user); fi
if ! command -v aarch64-linux-gnu-gcc >/dev/null 2>&1; then need_apt+=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross); fi

if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: apt-get install ${need_apt[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    echo "setup: please install: ${need_apt[*]} (needs root and apt-get)" >&2
    exit 1
  fi
fi

if command -v rustup >/dev/null 2>&1; then
  rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
  rustup target list --installed | grep -qx aarch64-unknown-linux-gnu || rustup target add aarch64-unknown-linux-gnu
  # std's source: the threaded wasm build (scripts/build-threads) rebuilds std with atomics.
  rustup component list --installed | grep -q '^rust-src' || rustup component add rust-src
fi
