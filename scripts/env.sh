# Sourced by the scripts: one cargo target directory outside the clone, so that fresh clones
# (CI) reuse earlier builds, and a private XDG runtime dir, which silences wgpu's warnings.
if [ -z "${CARGO_TARGET_DIR:-}" ]; then
  if mkdir -p /var/cache/ember/target 2>/dev/null && [ -w /var/cache/ember/target ]; then
    export CARGO_TARGET_DIR=/var/cache/ember/target
  else
    export CARGO_TARGET_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/ember/target"
  fi
fi
if [ -z "${XDG_RUNTIME_DIR:-}" ] || [ ! -d "${XDG_RUNTIME_DIR}" ]; then
  export XDG_RUNTIME_DIR="/tmp/ember-xdg-$(id -u)"
  mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"
fi
