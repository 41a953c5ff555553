# Shared output helpers for our buildpacks (sourced, never executed).
# Style: "-----> " step headers, 7-space indented details, " !     " warnings and errors.
step() { echo "-----> $*"; }
info() { echo "       $*"; }
warn() { echo " !     Warning: $*"; }
fail() { echo " !     $*"; exit 1; }
# Indent a command's output so it lines up under the step header.
indent() { sed -u -e '/^[[:space:]]*$/d' -e 's/^/       /'; }
# Read a config var from ENV_DIR (one file per variable); empty when unset.
# `read_env_var NAME VAR` stores it in VAR without a subshell (a fork costs ms on every
# build); `$(env_var NAME)` prints it. Both drop trailing newlines, as `$(cat FILE)` would.
read_env_var() {
  local __dir=${ENV_DIR:-} __value=""
  if [ -n "$__dir" ] && [ -f "$__dir/$1" ]; then
    IFS= read -r -d '' __value < "$__dir/$1" || true
    while [[ $__value == *$'\n' ]]; do __value=${__value%$'\n'}; done
  fi
  printf -v "$2" '%s' "$__value"
}
env_var() { local value; read_env_var "$1" value; printf '%s' "$value"; }
# Write the `export` file next to bin/ for the next buildpack, if our dir is writable.
write_export() { local bp_dir=$1; shift; if [ -w "$bp_dir" ]; then printf '%s\n' "$@" > "$bp_dir/export"; fi; }
