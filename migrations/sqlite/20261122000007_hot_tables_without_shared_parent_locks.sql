-- The PostgreSQL tree drops here the foreign keys whose parent rows every
-- concurrent transaction share-locks (see its comment). SQLite has one
-- writer and checks foreign keys in-process at little cost, and dropping one
-- would mean rebuilding the table, so SQLite keeps them; this file keeps the
-- two trees' versions in step.
select 1;
