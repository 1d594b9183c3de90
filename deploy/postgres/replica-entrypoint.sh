#!/bin/bash
# Streaming replica: clone the primary once (pg_basebackup -R writes
# standby.signal and primary_conninfo), then run as a hot standby.
set -euo pipefail
export PGDATA=/var/lib/postgresql/data
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  until pg_isready -h postgres -p 5432; do sleep 1; done
  pg_basebackup -h postgres -U replicator -D "$PGDATA" -X stream -R -P
  chmod 700 "$PGDATA"
fi
exec postgres -c hot_standby=on -c listen_addresses='*'
