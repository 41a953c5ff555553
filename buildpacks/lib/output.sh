# Shared output helpers for our buildpacks (sourced, never executed).
# Style: "-----> " step headers, 7-space indented details, " !     " warnings and errors.
step() { echo "-----> $*"; }
info() { echo "       $*"; }
warn() { echo " !     Warning: $*"; }
fail() { echo " !     $*"; exit 1; }
# Indent a command's output so it lines up under the step header.
indent() { sed -u -e '/^[[:space:]]*$/d' -e 's/^/       /'; }
# Read a config var from ENV_DIR (one file per variable); empty when unset.
env_var() { local dir=${ENV_DIR:-}; if [ -n "$dir" ] && [ -f "$dir/$1" ]; then cat "$dir/$1"; fi; }
# Write the `export` file next to bin/ for the next buildpack, if our dir is writable.
write_export() { local bp_dir=$1; shift; if [ -w "$bp_dir" ]; then printf '%s\n' "$@" > "$bp_dir/export"; fi; }
