#!/usr/bin/env bash
# Restores a pg_dump backup into an EMPTY database (create it first:
# createdb -O fenrun fenrun_restored). Stop fenrun, restore, point
# FENRUN_DATABASE_URL at it, run `fenrun ledger verify`, then start fenrun.
# apalis's tables need the hstore and pgcrypto extensions: restore as a role
# that may create them.
#   ops/backup/postgres-restore.sh /var/backups/fenrun/fenrun-….dump postgres://fenrun@db/fenrun_restored
set -euo pipefail
dump=${1:?usage: postgres-restore.sh BACKUP.dump DATABASE_URL}
url=${2:?usage: postgres-restore.sh BACKUP.dump DATABASE_URL}
tables=$(psql "$url" -Atqc "select count(*) from information_schema.tables where table_schema not in ('pg_catalog','information_schema')")
if [ "$tables" != "0" ]; then
  echo "the target database is not empty ($tables tables): restore into a new one" >&2
  exit 1
fi
pg_restore --dbname "$url" --exit-on-error --no-owner "$dump"
echo "restored $dump; now: fenrun --database-url '$url' ledger verify"
