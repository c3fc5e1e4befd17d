//! How a point in time is stored: `timestamptz` on PostgreSQL, and on SQLite
//! an integer count of microseconds since the Unix epoch (UTC).
//!
//! SQLite has no time type. Text would order `+10000-01-01…` before
//! `2026-…`, so a far-future `confirmed_at` once released its hold at
//! once; integers order as time does, and microseconds are PostgreSQL's
//! resolution, so both backends give back the same instant. Every time the
//! store binds or reads goes through [`DbTime`]; a `DateTime<Utc>` bound
//! directly would be text, which the STRICT integer columns refuse.

use chrono::{DateTime, Utc};
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgArgumentBuffer, PgTypeInfo, PgValueRef};
use sqlx::sqlite::{SqliteArgumentsBuffer, SqliteTypeInfo, SqliteValueRef};
use sqlx::{Decode, Encode, Postgres, Sqlite, Type};

/// A UTC instant as the database keeps it (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DbTime(pub DateTime<Utc>);

impl From<DateTime<Utc>> for DbTime {
    fn from(at: DateTime<Utc>) -> DbTime {
        DbTime(at)
    }
}

impl From<DbTime> for DateTime<Utc> {
    fn from(at: DbTime) -> DateTime<Utc> {
        at.0
    }
}

/// Microseconds since the epoch; chrono's whole range fits in an `i64` of them.
fn to_micros(at: &DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

fn from_micros(micros: i64) -> Result<DateTime<Utc>, BoxDynError> {
    DateTime::from_timestamp_micros(micros)
        .ok_or_else(|| format!("stored time {micros} µs is outside the representable range").into())
}

impl Type<Sqlite> for DbTime {
    fn type_info() -> SqliteTypeInfo {
        <i64 as Type<Sqlite>>::type_info()
    }

    fn compatible(ty: &SqliteTypeInfo) -> bool {
        <i64 as Type<Sqlite>>::compatible(ty)
    }
}

impl Encode<'_, Sqlite> for DbTime {
    fn encode_by_ref(&self, buf: &mut SqliteArgumentsBuffer) -> Result<IsNull, BoxDynError> {
        Encode::<Sqlite>::encode(to_micros(&self.0), buf)
    }
}

impl<'r> Decode<'r, Sqlite> for DbTime {
    fn decode(value: SqliteValueRef<'r>) -> Result<Self, BoxDynError> {
        from_micros(<i64 as Decode<Sqlite>>::decode(value)?).map(DbTime)
    }
}

impl Type<Postgres> for DbTime {
    fn type_info() -> PgTypeInfo {
        <DateTime<Utc> as Type<Postgres>>::type_info()
    }

    fn compatible(ty: &PgTypeInfo) -> bool {
        <DateTime<Utc> as Type<Postgres>>::compatible(ty)
    }
}

impl Encode<'_, Postgres> for DbTime {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        Encode::<Postgres>::encode_by_ref(&self.0, buf)
    }
}

impl<'r> Decode<'r, Postgres> for DbTime {
    fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
        <DateTime<Utc> as Decode<Postgres>>::decode(value).map(DbTime)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn microseconds_keep_order_across_the_year_ten_thousand() {
        let now: DateTime<Utc> = "2026-12-03T00:00:00Z".parse().unwrap();
        let far: DateTime<Utc> = "+10000-01-01T00:00:00Z".parse().unwrap();
        assert!(to_micros(&far) > to_micros(&now));
        let ancient: DateTime<Utc> = "0001-01-01T00:00:00Z".parse().unwrap();
        assert!(to_micros(&ancient) < to_micros(&now));
    }

    #[test]
    fn microseconds_round_trip_every_representable_instant() {
        for at in [
            DateTime::<Utc>::MIN_UTC,
            DateTime::<Utc>::MAX_UTC,
            DateTime::UNIX_EPOCH,
        ] {
            let micros = to_micros(&at);
            let back = from_micros(micros).unwrap();
            assert_eq!(back.timestamp_micros(), micros);
        }
        let precise: DateTime<Utc> = "2026-12-03T08:15:30.123456Z".parse().unwrap();
        assert_eq!(from_micros(to_micros(&precise)).unwrap(), precise);
    }
}
