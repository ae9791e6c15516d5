#!/bin/sh
# Entry point of the entropy-dashboard image: runs `entropy-dash "$@"`.
#
# With ENTROPY_DASH_MIGRATE=1 (the ingest service, which connects as the writer role) it first creates or
# upgrades the schema with `entropy-dash init`, retrying while the database is still starting
# (ENTROPY_DASH_DB_WAIT tries, 2 s apart; default 30).
set -eu

if [ "${ENTROPY_DASH_MIGRATE:-0}" = "1" ]; then
  tries="${ENTROPY_DASH_DB_WAIT:-30}"
  until entropy-dash init --quiet; do
    tries=$((tries - 1))
    if [ "$tries" -le 0 ]; then
      echo "entrypoint: cannot create the schema at \$ENTROPY_DASH_DB; giving up" >&2
      exit 1
    fi
    echo "entrypoint: database not ready, retrying in 2 s" >&2
    sleep 2
  done
fi

exec entropy-dash "$@"
