-- SQLite's tree turns its text times into integer microseconds here, so
-- that times compare as times (a year past 9999 sorted before 2026 as text).
-- PostgreSQL has kept timestamptz from the start and compares them as
-- times; this file keeps the two trees' versions in step.
select 1;
