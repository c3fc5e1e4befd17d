//! The workflow engine: loads the workflow definitions and scheduled jobs
//! under `workflows/`, runs their durable steps and fires their cron jobs.
//!
//! - [`definition`]: the TOML files as checked, typed data.

pub mod definition;
pub mod settlement;
pub mod worker;
