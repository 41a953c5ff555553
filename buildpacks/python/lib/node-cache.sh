# Remembers facts about the build machine's tools per node, for bin/compile (sourced).
# uv's parts (uv/, venv-slots/) are only used by an install: lib/node-cache-uv.sh, which
# lib/install.sh sources on a cache miss (a warm build does not parse them).
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
# A probe file: the answer's length in bytes, a newline, the answer, then the head.
# save_answer FILE ANSWER HEAD
save_answer() { local LC_ALL=C; printf '%s\n%s%s' "${#2}" "$2" "$3" > "$1"; }
# saved_answer VAR FILE BIN: sets `head` (the caller's) to BIN's head (empty when BIN is
# unreadable) and VAR to the answer FILE holds, if FILE was saved with that head.
# All of it in one C locale: bash handles a 4 KiB string of binary bytes several times
# slower in a UTF-8 locale, and each switch of locale costs ~20 us; the file is read in
# parts (no slicing of a 4 KiB string), the tail is compared once. Fails on any mismatch.
saved_answer() {
  local LC_ALL=C len="" answer="" rest=""
  [ -r "$3" ] || return 1
  IFS= read -r -N "$HEAD_CHARS" head < "$3" || true
  [ ${#head} -gt 0 ] && [ -f "$2" ] || return 1
  {
    IFS= read -r len || return 1
    case $len in '' | *[!0-9]* | ??????????*) return 1 ;; esac  # (`read -N` takes < 2^31)
    IFS= read -r -N "$len" answer || return 1
    # One more than a head can hold: a longer tail is not this head.
    IFS= read -r -N $((HEAD_CHARS + 1)) rest || true
  } < "$2"
  [[ $rest == "$head" ]] || return 1
  printf -v "$1" '%s' "$answer"
}

# node_cached VAR BIN ASK CHECK: VAR = the output of ASK (a command asking BIN something),
# remembered under the node dir for BIN's path while BIN has the same first bytes and
# `CHECK answer` succeeds. Fails when ASK fails.
node_cached() {
  local -n __answer=$1
  local bin=$2 ask=$3 check=$4 file head="" after="" tmp
  file=$NODE_DIR/probe/${bin//\//%}
  if saved_answer __answer "$file" "$bin" && [ -n "$__answer" ] && "$check" "$__answer"; then
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
