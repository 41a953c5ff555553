# Remembers facts about the build machine's tools per node, for bin/compile (sourced).
#
# What is kept is never a download (the fairness rule of cold builds): the interpreter's
# version and real path, uv's version, and uv's interpreter info (uv starts Python with
# site to read sysconfig, ~80 ms, for every interpreter path it meets). Kept in
# NODE_DIR = $NOMADPAAS_BUILD_CACHE_DIR/.buildpacks/python, the node meta that also holds
# the node-local build cache; without one, in the app's CACHE_DIR.
#
#   probe/<path, / as %>   an answer about the binary at that path, kept with the binary's
#                          first bytes (see HEAD_CHARS): a binary replaced or upgraded in
#                          place is asked again; two small reads, no fork
#   uv/interpreter-v*/     uv's interpreter-info buckets, symlinked into each build's
#                          scratch UV_CACHE_DIR: uv keys entries by the interpreter's path
#                          and checks its ctime, and writes them atomically (temp + rename),
#                          so builds running at once share them safely
#   venv-slots/<k>         symlinks to the .venv being installed (flock'ed <k>.lock): uv
#                          sees a venv at a path it has met before, not a new build dir each
#                          time, so it does not start the new venv's Python either
#
# NODE_DIR is a directory of the node-local cache's root, which the slug builder prunes as
# if it were an app's slot: no name here may be `lock`, `tag` or `tree` (localcache.py).
# Deleting NODE_DIR while no build runs is always safe. Every write here is best effort: a
# node dir we cannot write only costs speed.

NODE_DIR="" NODE_SHARED=""

# node_cache_init FALLBACK_DIR: choose NODE_DIR (an unset, relative or unresolved node
# meta means no node cache: use FALLBACK_DIR, private to this app and build).
node_cache_init() {
  local root=${NOMADPAAS_BUILD_CACHE_DIR:-}
  if [[ $root == /* && $root != *'${'* ]]; then
    NODE_DIR=$root/.buildpacks/python NODE_SHARED=1
  else
    NODE_DIR=$1 NODE_SHARED=""
  fi
}

# A binary is known by its first this many characters: for an ELF file its headers and
# GNU build-id (a hash of its whole content), which differ between any two builds, so a
# binary replaced or upgraded in place is noticed whatever its mtime (Nix stores and
# normalised image layers share mtimes; the app's cache keeps whole seconds only). Read
# in the C locale (bytes; bash drops NULs): a small read, no fork.
HEAD_CHARS=4096
# binary_head VAR FILE
binary_head() { local LC_ALL=C; IFS= read -r -N "$HEAD_CHARS" "$1" < "$2" || true; }
# saved_answer VAR FILE HEAD: VAR = the answer FILE holds if it was saved with HEAD.
# File format: the answer's length in bytes, a newline, the answer, then the head.
saved_answer() {
  local LC_ALL=C saved="" len rest
  IFS= read -r -d '' saved < "$2" || true
  len=${saved%%$'\n'*} rest=${saved#*$'\n'}
  [[ $len =~ ^[0-9]+$ ]] && [ "${rest:len}" = "$3" ] || return 1
  printf -v "$1" '%s' "${rest:0:len}"
}
# save_answer FILE ANSWER HEAD
save_answer() { local LC_ALL=C; printf '%s\n%s%s' "${#2}" "$2" "$3" > "$1"; }

# node_cached VAR BIN ASK CHECK: VAR = the output of ASK (a command asking BIN something),
# remembered under the node dir for BIN's path while BIN has the same first bytes and
# `CHECK answer` succeeds. Fails when ASK fails.
node_cached() {
  local -n __answer=$1
  local bin=$2 ask=$3 check=$4 file head="" after="" tmp
  file=$NODE_DIR/probe/${bin//\//%}
  [ ! -r "$bin" ] || binary_head head "$bin"
  if [ -n "$head" ] && [ -f "$file" ] && saved_answer __answer "$file" "$head" \
      && [ -n "$__answer" ] && "$check" "$__answer"; then
    return 0
  fi
  __answer=$("$ask") || return 1
  # Remembered only if the binary did not change while it answered.
  [ -n "$head" ] && [ -n "$__answer" ] && "$check" "$__answer" || return 0
  binary_head after "$bin"
  [ "$after" = "$head" ] || return 0
  tmp=$file.$$
  { { [ -d "${file%/*}" ] || mkdir -p "${file%/*}"; } && save_answer "$tmp" "$__answer" "$head" \
      && mv -f "$tmp" "$file"; } 2>/dev/null || rm -f "$tmp"
}

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
