#!/usr/bin/env bash
# Backup of a PostgreSQL fenrun database while it runs: pg_dump takes one
# consistent snapshot (a repeatable-read transaction) in the custom format.
# For point-in-time recovery, also archive WAL (archive_command) and take
# base backups with pg_basebackup; this script is the logical copy.
#   ops/backup/postgres-backup.sh postgres://fenrun@db/fenrun /var/backups/fenrun
set -euo pipefail
url=${1:?usage: postgres-backup.sh DATABASE_URL BACKUP_DIR}
dir=${2:?usage: postgres-backup.sh DATABASE_URL BACKUP_DIR}
mkdir -p "$dir"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
out="$dir/fenrun-$stamp.dump"
pg_dump --dbname "$url" --format custom --compress 9 --file "$out"
pg_restore --list "$out" >/dev/null
echo "backup written: $out"
