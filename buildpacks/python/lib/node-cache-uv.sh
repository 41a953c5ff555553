# uv's part of the node cache (NODE_DIR, see node-cache.sh): its interpreter-info buckets
# and the venv slots. Only an install uses them: sourced by lib/install.sh on a cache miss.

# uv_scratch_cache: export UV_CACHE_DIR (empty of packages: nothing downloaded is reused)
# and UV_LINK_MODE, with the node's interpreter info in it.
uv_scratch_cache() {
  # In the slug builder HOME is this build's scratch, next to BUILD_DIR (same file system)
  # and removed with the build's work dir after the push: uv can hard-link from its cache
  # into the venv instead of writing every file twice, and nobody waits for the cache to
  # be deleted. Elsewhere: a temp dir, copied from, removed at exit.
  if [ "${HOME:-}" = "${BUILD_DIR%/*}/home" ] && [ -d "$HOME" ] && [ -w "$HOME" ]; then
    UV_CACHE_DIR=$HOME/.nomadpaas-uv-cache.$$ UV_LINK_MODE=hardlink
  else
    UV_CACHE_DIR=$(mktemp -d)/uv-cache UV_LINK_MODE=copy
    tmp_paths+=("${UV_CACHE_DIR%/uv-cache}")
  fi
  export UV_CACHE_DIR UV_LINK_MODE
  local buckets=("$NODE_DIR"/uv/interpreter-v*)
  [ -d "${buckets[0]}" ] || buckets=()
  [ ${#buckets[@]} -gt 0 ] || return 0
  if [ -n "$NODE_SHARED" ]; then
    { mkdir -p "$UV_CACHE_DIR" && ln -s "${buckets[@]}" "$UV_CACHE_DIR/"; } 2>/dev/null || true
  else
    # The app's own copy: copied, so entries for this build's paths do not pile up in it.
    { mkdir -p "$UV_CACHE_DIR" && cp -r "${buckets[@]}" "$UV_CACHE_DIR/"; } 2>/dev/null || true
  fi
}

# uv_scratch_done: keep uv's interpreter-info buckets the node does not have yet (the first
# build on a node, or a uv with a new bucket version); copied, then renamed into place, so
# another build never sees half a bucket.
uv_scratch_done() {
  local bucket dest tmp
  for bucket in "$UV_CACHE_DIR"/interpreter-v*; do
    [ -d "$bucket" ] && [ ! -L "$bucket" ] || continue
    dest=$NODE_DIR/uv/${bucket##*/}
    [ ! -e "$dest" ] || continue
    tmp=$NODE_DIR/uv/.new.$$
    { mkdir -p "$NODE_DIR/uv" && cp -r "$bucket" "$tmp" && mv -T "$tmp" "$dest"; } 2>/dev/null || rm -rf "$tmp"
  done
}

# venv_slot_take: venv_python = this build's .venv/bin/python as uv should be given it. On a
# node cache, through a free slot: a stable path whose interpreter info uv already has (it
# is the same venv layout of the same interpreter: uv re-asks when that interpreter's
# ctime changes). The venv stays where it is; nothing in it records the slot's path (uv
# writes relative paths into a relocatable venv).
slot_fd=""
venv_python=.venv/bin/python
venv_slot_take() {
  venv_python=.venv/bin/python
  [ -n "$NODE_SHARED" ] || return 0
  local k dir=$NODE_DIR/venv-slots
  [ -d "$dir" ] || mkdir -p "$dir" 2>/dev/null || return 0
  for k in 0 1 2 3 4 5 6 7; do
    { exec {slot_fd}>>"$dir/$k.lock"; } 2>/dev/null || { slot_fd=""; return 0; }
    if flock -n "$slot_fd" 2>/dev/null; then
      if ln -sfn "$BUILD_DIR/.venv" "$dir/$k" 2>/dev/null; then venv_python=$dir/$k/bin/python; return 0; fi
    fi
    exec {slot_fd}>&-
    slot_fd=""
  done
}
venv_slot_release() {
  if [ -n "$slot_fd" ]; then exec {slot_fd}>&-; slot_fd=""; fi
}
