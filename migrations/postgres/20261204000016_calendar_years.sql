-- Years of a business calendar applied at run time (issue 13): the State
-- Council notice of a year, entered with PUT /v1/admin/calendars/{name}/years/{year}
-- or `fenrun calendar apply`, overriding the calendar file's copy of that
-- year (or its provisional, computed one). Every application is a new
-- version; the highest version of a year is in force. The highest id is the
-- calendar's generation: a process whose calendar is older reloads before it
-- plans or releases a hold.
create table calendar_years (
    id bigint generated always as identity primary key,
    calendar text not null,            -- the calendar file's stem, e.g. 'cn'
    year integer not null,
    version integer not null,
    source text not null,              -- the notice, e.g. '国办发明电〔2026〕5号'
    -- The year as applied: {"source", "holidays": [{"name","from","to"}], "makeup_workdays": [...]}.
    body text not null,
    body_sha256 text not null,
    applied_by text not null,
    applied_at timestamptz not null,
    -- When the holding orders were re-planned over this version; null while
    -- that is still to do (a crash between the two commits), and the release
    -- step does it before it releases anything.
    replanned_at timestamptz,
    unique (calendar, year, version),
    constraint calendar_years_year check (year between 1900 and 9999),
    constraint calendar_years_version check (version > 0)
);

create index calendar_years_pending on calendar_years (id) where replanned_at is null;
