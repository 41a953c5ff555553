#!/usr/bin/env bash
# `make demo`: start the embedded stack and walk through what the platform does today.
#
# Idempotent: a second run finds the stack running, the app existing, GREETING set and
# the source unchanged, and changes nothing. NOMADPAAS_HOME comes from the Makefile ($(CURDIR)/.nomadpaas).
# Stop the stack with `NOMADPAAS_HOME=$PWD/.nomadpaas .venv/bin/nomadpaas down` (data is kept;
# without NOMADPAAS_HOME the CLI looks in its default home and finds no stack) or `make clean`.
set -euo pipefail

cd "$(dirname "$0")/../.."
NOMADPAAS="${NOMADPAAS:-$PWD/.venv/bin/nomadpaas}"
APP="${DEMO_APP:-demo}"
export NOMADPAAS_HOME="${NOMADPAAS_HOME:-$PWD/.nomadpaas}"

say() { printf '\n$ %s\n' "$*"; }
np() { "$NOMADPAAS" "$@"; }
run() { say "nomadpaas $*"; np "$@"; }

say "nomadpaas up"
np up --timeout 120 >/dev/null
# Point this shell at the embedded stack, even if NOMAD_ADDR & co. name another cluster.
eval "$(np up --env)"
echo "-----> Embedded stack running; NOMAD_ADDR=$NOMAD_ADDR, S3 at $NOMADPAAS_S3_ENDPOINT"
echo "       For your shell: eval \"\$(.venv/bin/nomadpaas up --env)\""

run doctor

if np apps info -a "$APP" >/dev/null 2>&1; then
    say "nomadpaas apps create $APP"
    echo "-----> $APP exists already"
else
    run apps create "$APP"
fi

if [[ "$(np config get -a "$APP" GREETING 2>/dev/null || true)" == "hello" ]]; then
    say "nomadpaas config set -a $APP GREETING=hello"
    echo "-----> GREETING is already hello: no new release"
else
    run config set -a "$APP" GREETING=hello
fi

run config -a "$APP"

# Build the Flask example with the buildpacks, as a Nomad batch job on the agent; a second
# run finds the source unchanged and makes no new release.
run push examples/flask -a "$APP" --timeout 600
run releases -a "$APP"

cat <<'MSG'

-----> What works today: the embedded stack (Nomad-API agent with ACLs + durable S3),
       apps, config vars and the release ledger in Nomad Variables, and `push`: the
       source goes to S3, the `nomadpaas-build` batch job compiles it with buildpacks
       into a slug, and a release records it. The agent runs Nomad jobs (raw_exec),
       with logs, restarts and re-attach after a crash.
       Not built yet (later issues): deploying the release as the app's service job with
       canaries and health checks, `ps`/`scale`/`logs`/`run`, and the router that
       answers at http://demo.localhost.
MSG
# The stack lives in this checkout's home, not the CLI's default one: say so in the hint.
printf '       Stop the stack: NOMADPAAS_HOME=%q %s down\n' "$NOMADPAAS_HOME" "$NOMADPAAS"
printf '       (data kept; `make clean` wipes it)\n'
