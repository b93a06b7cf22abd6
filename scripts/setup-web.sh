#!/usr/bin/env bash
# Installs the web toolchain at pinned versions, from the registries, once: Trunk, wasm-bindgen-cli
# (the exact version of the wasm-bindgen crate in Cargo.lock), wasm-opt from npm's binaryen,
# Debian's chromium and chromedriver (for wasm-bindgen-test), Firefox ESR and WebKitGTK (with
# EMBER_ENGINES=1), and playwright-core, puppeteer-core and selenium-webdriver. Trunk itself never downloads a tool (Trunk.toml).
# Source it: it puts binaryen's bin/ on PATH.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools="${XDG_CACHE_HOME:-$HOME/.cache}/ember/tools"
bindgen_version="$(grep -A1 '^name = "wasm-bindgen"$' "$here/Cargo.lock" | sed -n 's/^version = "\(.*\)"/\1/p')"

if ! trunk --version 2>/dev/null | grep -q '0.21.14'; then
  echo "setup-web: cargo install trunk 0.21.14 (about 6 min)"
  cargo install --locked trunk --version 0.21.14
fi
if ! wasm-bindgen --version 2>/dev/null | grep -q "$bindgen_version"; then
  echo "setup-web: cargo install wasm-bindgen-cli $bindgen_version (about 5 min)"
  # Not --locked: its lockfile pins a crate version the registry no longer serves.
  cargo install wasm-bindgen-cli --version "$bindgen_version"
fi
if [ ! -x "$tools/node_modules/binaryen/bin/wasm-opt" ]; then
  echo "setup-web: npm install binaryen@132 (wasm-opt; Debian's is too old for wasm-bindgen's output)"
  npm install --silent --no-audit --no-fund --prefix "$tools" binaryen@132
fi
export PATH="$tools/node_modules/binaryen/bin:$PATH"
# A small CJK font, so that the 中文 screenshots show characters rather than boxes. With
# EMBER_ENGINES=1 (the test command and the benchmark), also Firefox ESR, and WebKitGTK's
# WebKitWebDriver and MiniBrowser under Xvfb, for the cross-engine suite
# (tests/web/engines.test.mjs): Debian's packages, no downloaded browser or driver.
pkgs=()
[ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ] && [ -d /usr/share/fonts/truetype/wqy ] || pkgs+=(chromium chromium-driver fonts-wqy-microhei)
if [ "${EMBER_ENGINES:-}" = 1 ]; then
  [ -x /usr/bin/firefox-esr ] && [ -x /usr/bin/WebKitWebDriver ] && [ -x /usr/bin/Xvfb ] || pkgs+=(firefox-esr webkit2gtk-driver xvfb)
fi
if [ ${#pkgs[@]} -gt 0 ]; then
  echo "setup-web: apt-get install ${pkgs[*]}"
  if [ "$(id -u)" = 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >/dev/null \
      || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >/dev/null; }
  else
    echo "setup-web: please install ${pkgs[*]} (needs root)" >&2
    exit 1
  fi
fi
if [ ! -d "$here/node_modules/playwright-core" ] || [ ! -d "$here/node_modules/puppeteer-core" ] || [ ! -d "$here/node_modules/selenium-webdriver" ]; then
  (cd "$here" && npm ci --silent --no-audit --no-fund)
fi
