# The install on a cache miss (sourced by bin/compile, whose variables it uses): the app's
# dependencies into .venv with uv (or pip), then saved in the cache with the key. A warm
# build does not parse it.
. "$BP_DIR/lib/node-cache-uv.sh"

copy_tree() {  # $1 -> $2 as hard links (same file system), else as a real copy
  cp -al "$1" "$2" 2>/dev/null || { rm -rf "$2"; cp -a "$1" "$2"; }
}
pyproject_has_project() {
  local line
  while IFS= read -r line || [ -n "$line" ]; do [[ $line != '[project]'* ]] || return 0; done < pyproject.toml
  return 1
}

if [ -d "$cached_venv" ]; then info "Dependencies or tools changed: the cached install is discarded"; fi
old=()  # (python/venv: the cache format before slug/)
for x in "$slug_cache" "$key_file" "$CACHE_DIR/python/venv"; do [ ! -e "$x" ] || old+=("$x"); done
if [ ${#old[@]} -gt 0 ]; then rm -rf "${old[@]}"; fi
reqs=()
if [ "$deps_file" = requirements.txt ]; then reqs+=(-r requirements.txt); fi
if [ "$deps_file" = pyproject.toml ]; then
  if pyproject_has_project; then reqs+=(-r pyproject.toml)
  else warn "pyproject.toml has no [project] table; no dependencies to install"; fi
fi
pkgs=()
for p in $extras; do pkgs+=("$p"); done
if [ -n "$UV" ]; then
  step "Installing dependencies with $installer${deps_file:+ from $deps_file}"
  uv_scratch_cache  # sets UV_CACHE_DIR and UV_LINK_MODE
  export UV_NO_PROGRESS=1 UV_PYTHON_DOWNLOADS=never
  read_env_var PIP_EXTRA_INDEX_URL x; [ -z "$x" ] || export UV_EXTRA_INDEX_URL="$x"
  read_env_var PIP_INDEX_URL x; [ -z "$x" ] || export UV_INDEX_URL="$x"
  out=$("$UV" venv --quiet --relocatable --python "$PYTHON" .venv 2>&1) \
    || { printf '%s\n' "$out" | indent; fail "creating the venv with $installer failed"; }
  if [ -n "$out" ]; then printf '%s\n' "$out" | indent; fi
  if [ ${#reqs[@]} -gt 0 ] || [ ${#pkgs[@]} -gt 0 ]; then
    venv_slot_take  # sets venv_python: .venv/bin/python, seen through a stable path
    # (uv names an environment other than ./.venv: here the slot, which means nothing to
    # the app's owner, so that line goes.)
    "$UV" pip install --python "$venv_python" ${reqs[@]+"${reqs[@]}"} ${pkgs[@]+"${pkgs[@]}"} 2>&1 \
      | sed -u -e '/^[[:space:]]*$/d' -e '/^Using Python .* environment at: /d' -e 's/^/       /' \
      || { venv_slot_release; fail "installing the dependencies${deps_file:+ from $deps_file} failed (uv's error is above)"; }
    venv_slot_release
  else
    info "No dependencies declared"
  fi
  uv_scratch_done
else
  step "Installing dependencies with $installer${deps_file:+ from $deps_file}"
  scratch=$(mktemp -d); tmp_paths+=("$scratch")
  "$PYTHON" -m venv --without-pip .venv
  if [ "$deps_file" = pyproject.toml ] && [ ${#reqs[@]} -gt 0 ]; then
    "$PYTHON" -c 'import sys, tomllib; print("\n".join(tomllib.load(open("pyproject.toml","rb"))["project"].get("dependencies", [])))' > "$scratch/reqs.txt"
    reqs=(-r "$scratch/reqs.txt")
  fi
  if [ ${#reqs[@]} -gt 0 ] || [ ${#pkgs[@]} -gt 0 ]; then
    read_env_var PIP_EXTRA_INDEX_URL x; [ -z "$x" ] || export PIP_EXTRA_INDEX_URL="$x"
    "$PYTHON" -m pip --python .venv/bin/python install --no-cache-dir --disable-pip-version-check --progress-bar off \
      ${reqs[@]+"${reqs[@]}"} ${pkgs[@]+"${pkgs[@]}"} 2>&1 | indent \
      || fail "installing the dependencies${deps_file:+ from $deps_file} failed (pip's error is above)"
  fi
  # pip writes absolute shebangs: replace them with uv's relocatable sh trampoline.
  "$PYTHON" - "$BUILD_DIR/.venv" <<'PY'
import os, sys
venv_bin = os.path.join(sys.argv[1], "bin")
prefix = ("#!" + os.path.join(venv_bin, "python")).encode()
trampoline = b"#!/bin/sh\n'''exec' \"$(dirname -- \"$(realpath -- \"$0\")\")\"/'python' \"$0\" \"$@\"\n' '''\n"
for name in os.listdir(venv_bin):
    path = os.path.join(venv_bin, name)
    if os.path.islink(path) or not os.path.isfile(path):
        continue
    with open(path, "rb") as f:
        first, rest = f.readline(), f.read()
    if first.startswith(prefix):
        with open(path, "wb") as f:
            f.write(trampoline + rest)
PY
fi
# Save the installed tree for the next build (absolute links stripped, like the slug),
# with the profile (one mkdir makes both .profile.d: the app's is needed below anyway).
strip_links
mkdir -p "$slug_cache/.profile.d" .profile.d
printf '%s' "$profile" > "$slug_cache/.profile.d/python.sh"
copy_tree .venv "$cached_venv"
printf '%s' "$key" > "$key_file"
