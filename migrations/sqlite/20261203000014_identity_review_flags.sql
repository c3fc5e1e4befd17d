-- Identity changes after a certificate (issue 17): a withholding
-- certificate names the distributor's real name and ID number, so a
-- distributor who changes either after one was issued has their next
-- withdrawal reviewed by a person, whatever its amount. One row per
-- distributor while that review is owed. The review of a withdrawal
-- carrying the flag deletes the row, unless the identity changed again
-- after that withdrawal was requested (then `changed_at` is newer and the
-- row stays). The history is in the audit log
-- (`identity.change_after_certificate`), not here.
--
-- A table of its own rather than a column of `distributor_identities`, so
-- that identity rows keep holding only the identity (sealed values and
-- masks), and the flag's rows can come and go.
create table identity_review_flags (
    distributor_id text primary key references distributors (id),
    -- When the identity last changed after a certificate: microseconds since
    -- the Unix epoch, UTC (see src/store/time.rs).
    changed_at integer not null,
    created_at integer not null
) strict;
