#!/usr/bin/env bash
# Online backup of a SQLite fenrun database while the service runs: SQLite's
# backup API (`.backup`) copies a consistent snapshot page by page without
# stopping writers (WAL mode). Then checks the copy and keeps it compressed.
#   ops/backup/sqlite-backup.sh /var/lib/fenrun/fenrun.db /var/backups/fenrun
# Needs the sqlite3 command (Debian: apt-get install sqlite3). The master key
# is NOT in the database: back it up separately, and never next to this copy.
set -euo pipefail
db=${1:?usage: sqlite-backup.sh DATABASE_FILE BACKUP_DIR}
dir=${2:?usage: sqlite-backup.sh DATABASE_FILE BACKUP_DIR}
command -v sqlite3 >/dev/null || { echo "sqlite3 is not installed" >&2; exit 2; }
mkdir -p "$dir"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
out="$dir/fenrun-$stamp.db"
sqlite3 "$db" ".timeout 10000" ".backup '$out'"
check=$(sqlite3 "$out" "pragma integrity_check;")
if [ "$check" != "ok" ]; then
  echo "integrity check of $out failed: $check" >&2
  exit 1
fi
gzip -9 "$out"
echo "backup written: $out.gz"
