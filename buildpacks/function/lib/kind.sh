# Which kind of function app is in $1: sets FUNCTION_KIND to "python" or "node", or "".
# A function app has no `web` process in its Procfile and either a main.py defining
# `main` or `handler` (or any function when FUNCTION_TARGET is set), or a package.json
# depending on @google-cloud/functions-framework with no start script.
# POSIX sh, no command substitution on the common path: every build runs detect, and a
# bash start or a fork costs 1-2 ms; grep only runs when there is no web process.
has_web_process() {  # $1 a Procfile: true when a line declares `web:` (blanks allowed)
  while IFS= read -r line || [ -n "$line" ]; do
    line=${line#"${line%%[![:space:]]*}"}
    case $line in
      web:*) return 0 ;;
      web[[:space:]]*)
        line=${line#web}
        line=${line#"${line%%[![:space:]]*}"}
        case $line in :*) return 0 ;; esac ;;
    esac
  done < "$1"
  return 1
}
detect_function_kind() {
  FUNCTION_KIND=""
  if [ -f "$1/Procfile" ] && has_web_process "$1/Procfile"; then return 0; fi
  if [ -f "$1/main.py" ] && grep -Eq "^(async[[:space:]]+)?def[[:space:]]+(${FUNCTION_TARGET:-main|handler})[[:space:]]*\(" "$1/main.py"; then
    FUNCTION_KIND=python; return 0
  fi
  if [ -f "$1/package.json" ] && grep -q '"@google-cloud/functions-framework"' "$1/package.json" \
      && ! node -e 'process.exit((require(process.argv[1]).scripts||{}).start ? 0 : 1)' "$1/package.json" 2>/dev/null; then
    FUNCTION_KIND=node; return 0
  fi
}
function_kind() {  # the same, printed
  detect_function_kind "$1"
  [ -z "$FUNCTION_KIND" ] || echo "$FUNCTION_KIND"
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
