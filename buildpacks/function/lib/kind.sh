# Which kind of function app is in $1: prints "python" or "node", or nothing.
# A function app has no `web` process in its Procfile and either a main.py defining
# `main` or `handler` (or any function when FUNCTION_TARGET is set), or a package.json
# depending on @google-cloud/functions-framework with no start script.
# (Bash builtins for the common checks: detect runs on every build, and each grep is a
# fork and an exec.)
has_line() {  # $1 file, $2 extended regex: true when a line of the file matches
  local line
  while IFS= read -r line || [ -n "$line" ]; do
    [[ $line =~ $2 ]] && return 0
  done < "$1"
  return 1
}
function_kind() {
  local d=$1
  if [ -f "$d/Procfile" ] && has_line "$d/Procfile" '^[[:space:]]*web[[:space:]]*:'; then return 0; fi
  if [ -f "$d/main.py" ] && has_line "$d/main.py" "^(async[[:space:]]+)?def[[:space:]]+(${FUNCTION_TARGET:-main|handler})[[:space:]]*\("; then
    echo python; return 0
  fi
  if [ -f "$d/package.json" ] && grep -q '"@google-cloud/functions-framework"' "$d/package.json" \
      && ! node -e 'process.exit((require(process.argv[1]).scripts||{}).start ? 0 : 1)' "$d/package.json" 2>/dev/null; then
    echo node; return 0
  fi
}
# The default target: FUNCTION_TARGET wins at run time; this is only the fallback.
default_target() {
  local d=$1
  if [ -f "$d/main.py" ]; then
    if grep -Eq '^(async[[:space:]]+)?def[[:space:]]+main[[:space:]]*\(' "$d/main.py"; then echo main; else echo handler; fi
  else
    echo handler
  fi
}
