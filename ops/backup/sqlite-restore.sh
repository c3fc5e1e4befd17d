#!/usr/bin/env bash
# Restores a SQLite backup made by sqlite-backup.sh. Stop fenrun first
# (systemctl stop fenrun-serve 'fenrun-worker@*'); the current database is
# kept beside it as .before-restore. Afterwards run `fenrun ledger verify`.
#   ops/backup/sqlite-restore.sh /var/backups/fenrun/fenrun-….db.gz /var/lib/fenrun/fenrun.db
set -euo pipefail
backup=${1:?usage: sqlite-restore.sh BACKUP.db.gz DATABASE_FILE}
db=${2:?usage: sqlite-restore.sh BACKUP.db.gz DATABASE_FILE}
if pgrep -x fenrun >/dev/null; then
  echo "fenrun is running: stop it before restoring" >&2
  exit 1
fi
if [ -e "$db" ]; then
  mv "$db" "$db.before-restore"
  rm -f "$db-wal" "$db-shm"
fi
gunzip -c "$backup" > "$db"
check=$(sqlite3 "$db" "pragma integrity_check;")
[ "$check" = "ok" ] || { echo "restored file fails its integrity check: $check" >&2; exit 1; }
echo "restored $backup to $db; now: fenrun --database-url sqlite://$db ledger verify"
