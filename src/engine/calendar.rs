//! The business calendar in force: the calendar file's years with the years
//! applied at run time laid over them, as of the latest generation this
//! process has loaded from the database.
//!
//! Every process (`serve`, `worker`, a command) keeps one [`CalendarBook`].
//! It is refreshed whenever the database says a newer generation exists:
//! before the release step, when a transaction refuses a stale calendar
//! ([`crate::store::StoreError::CalendarChanged`]), and when the console or
//! `/metrics` look. No restart is needed for a year applied elsewhere.

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock};

use crate::domain::calendar::BusinessCalendar;
use crate::store::{AppliedYear, Store, StoreError};

/// The calendar as of one generation.
#[derive(Debug)]
pub struct CalendarInForce {
    /// The id of the latest applied year this calendar includes (0: none).
    pub generation: i64,
    pub calendar: Arc<BusinessCalendar>,
    /// The years applied at run time it includes.
    pub applied_years: Vec<i32>,
}

/// One business calendar, reloaded when a year is applied anywhere.
#[derive(Debug)]
pub struct CalendarBook {
    /// The name in `/v1/admin/calendars/{name}`: the file's stem, `cn`.
    key: String,
    /// The calendar file as loaded at start-up.
    file: Arc<BusinessCalendar>,
    current: RwLock<Arc<CalendarInForce>>,
}

impl CalendarBook {
    /// A book holding only the file's years, generation 0: call
    /// [`CalendarBook::refresh`] before relying on it.
    pub fn new(key: impl Into<String>, file: Arc<BusinessCalendar>) -> CalendarBook {
        let current = Arc::new(CalendarInForce {
            generation: 0,
            calendar: file.clone(),
            applied_years: Vec::new(),
        });
        CalendarBook {
            key: key.into(),
            file,
            current: RwLock::new(current),
        }
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    /// The calendar as last loaded.
    pub fn current(&self) -> Arc<CalendarInForce> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The calendar as the database has it now: reloaded when a newer
    /// generation exists, else the one already loaded.
    ///
    /// # Errors
    /// The database's, or [`StoreError::Corrupt`] for a stored year that no
    /// longer passes the checks.
    pub async fn refresh(&self, store: &Store) -> Result<Arc<CalendarInForce>, StoreError> {
        let generation = store.calendar_generation().await?;
        let current = self.current();
        if generation == current.generation {
            return Ok(current);
        }
        let loaded = Arc::new(self.load(store).await?);
        let mut slot = self.current.write().unwrap_or_else(PoisonError::into_inner);
        // Another task may have loaded a newer one meanwhile.
        if loaded.generation > slot.generation {
            if loaded.generation != 0 {
                tracing::info!(
                    calendar = %self.key,
                    generation = loaded.generation,
                    applied_years = ?loaded.applied_years,
                    "business calendar reloaded with the years applied at run time"
                );
            }
            *slot = loaded;
        }
        Ok(slot.clone())
    }

    async fn load(&self, store: &Store) -> Result<CalendarInForce, StoreError> {
        // The generation first: years applied after it are then loaded too
        // but labelled older, and the next transaction merely reloads.
        let generation = store.calendar_generation().await?;
        let applied: BTreeMap<i32, AppliedYear> = store
            .calendar_years(&self.key)
            .await?
            .into_iter()
            .map(|version| (version.year, version))
            .collect();
        let mut calendar = self.file.clone();
        for (year, version) in &applied {
            let checked = version.body.check(*year).map_err(|error| {
                StoreError::Corrupt(format!(
                    "calendar {} year {year} version {}: {error}",
                    self.key, version.version
                ))
            })?;
            calendar = Arc::new(calendar.with_applied_year(checked, version.version));
        }
        Ok(CalendarInForce {
            generation,
            calendar,
            applied_years: applied.into_keys().collect(),
        })
    }
}
