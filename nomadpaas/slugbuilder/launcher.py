"""The run side inside every slug: `app/.nomadpaas/start`, a bash launcher, and its files.

Contract (DESIGN.md §2; what the app job and one-off jobs run):

    <dir>/app/.nomadpaas/start <process-type>    run a Procfile process (`web`, `worker`, `release`)
    <dir>/app/.nomadpaas/start -c '<command>'    run a shell command (one-offs: `nomadpaas run`)
    <dir>/app/.nomadpaas/start -- <argv>…        exec argv as is

It finds the app dir from its own path, so the slug runs from **wherever it is unpacked**;
sets HOME to the app dir and cds there; defaults PORT from NOMAD_PORT_web/NOMAD_PORT_http
and DYNO to `<type>.<alloc index + 1>`; sources `.profile.d/*.sh` (alphabetically) and then
`.profile` like Heroku; and finally `exec bash -c "<command>"`, so `$PORT`, `${X:-default}`
and `&&` work and the command replaces the launcher (signals reach it; no extra parent).
Exit codes: 127 when the process type is not in the slug, 2 for bad usage.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from nomadpaas.procfile import render_procfile

__all__ = [
    "LAUNCHER_RELPATH",
    "PLATFORM_DIR",
    "PROCESS_TYPES_RELPATH",
    "launcher_script",
    "write_launcher",
]

# Inside the app dir; the slug holds them under ./app/.
PLATFORM_DIR = ".nomadpaas"
LAUNCHER_RELPATH = f"{PLATFORM_DIR}/start"
PROCESS_TYPES_RELPATH = f"{PLATFORM_DIR}/process-types"

_LAUNCHER = r"""#!/usr/bin/env bash
# nomadpaas slug launcher: start <process-type> | start -c '<command>' | start -- <argv>...
# Written by the slug builder. Runs from wherever the slug was unpacked.
app_dir=$(cd -P -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd) || exit 1
usage() {
  echo "usage: start <process-type> | start -c '<command>' | start -- <argv>..." >&2
  exit 2
}
[ $# -ge 1 ] || usage

mode=process; ptype=""; command=""
case $1 in
  -c) [ $# -eq 2 ] || usage; mode=shell; command=$2; ptype=run ;;
  --) shift; [ $# -ge 1 ] || usage; mode=argv; ptype=run ;;
  -*) usage ;;
  *)
    [ $# -eq 1 ] || usage
    ptype=$1; found=""
    while IFS= read -r line || [ -n "$line" ]; do
      name=${line%%:*}
      if [ "$name" = "$ptype" ]; then command=${line#*:}; command=${command# }; found=1; break; fi
    done < "$app_dir/.nomadpaas/process-types"
    if [ -z "$found" ]; then
      known=$(cut -d: -f1 "$app_dir/.nomadpaas/process-types" | tr '\n' ' ')
      echo "start: process type '$ptype' is not in this slug (it has: ${known% })" >&2
      exit 127
    fi
    ;;
esac

export HOME="$app_dir"
cd "$HOME" || exit 1
if [ -z "${PORT:-}" ]; then
  if [ -n "${NOMAD_PORT_web:-}" ]; then export PORT=$NOMAD_PORT_web
  elif [ -n "${NOMAD_PORT_http:-}" ]; then export PORT=$NOMAD_PORT_http
  fi
fi
if [ -z "${DYNO:-}" ]; then
  if [ -n "${NOMAD_ALLOC_INDEX:-}" ]; then export DYNO="$ptype.$((NOMAD_ALLOC_INDEX + 1))"
  else export DYNO="$ptype.1"; fi
fi

# Sourced, not run: they export into this shell (buildpacks write ${VAR:-default} so
# config vars win). No `set -e` here: a failing profile line must not stop the app.
for profile in "$HOME"/.profile.d/*.sh; do
  [ -f "$profile" ] && . "$profile"
done
[ -f "$HOME/.profile" ] && . "$HOME/.profile"

case $mode in
  argv) exec "$@" ;;
  *) exec bash -c "$command" ;;
esac
"""


def launcher_script() -> str:
    """The launcher's bash source."""
    return _LAUNCHER


def write_launcher(app_dir: str | os.PathLike[str], processes: Mapping[str, str]) -> str:
    """Write the launcher and the process-types file into `app_dir`; return the launcher path."""
    platform_dir = os.path.join(app_dir, PLATFORM_DIR)
    if not os.path.isdir(platform_dir):  # as mkdir(exist_ok=True): a file there is an error
        os.mkdir(platform_dir)
    launcher = os.path.join(app_dir, LAUNCHER_RELPATH)
    with open(launcher, "w") as f:
        f.write(_LAUNCHER)
    os.chmod(launcher, 0o755)
    with open(os.path.join(app_dir, PROCESS_TYPES_RELPATH), "w") as f:
        f.write(render_procfile(processes))
    return launcher
