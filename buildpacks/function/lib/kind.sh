# Which kind of function app is in $1: prints "python" or "node", or nothing.
# A function app has no `web` process in its Procfile and either a main.py defining
# `main` or `handler` (or any function when FUNCTION_TARGET is set), or a package.json
# depending on @google-cloud/functions-framework with no start script.
function_kind() {
  local d=$1
  if [ -f "$d/Procfile" ] && grep -Eq '^[[:space:]]*web[[:space:]]*:' "$d/Procfile"; then return 0; fi
  if [ -f "$d/main.py" ] && grep -Eq "^(async[[:space:]]+)?def[[:space:]]+(${FUNCTION_TARGET:-main|handler})[[:space:]]*\(" "$d/main.py"; then
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
