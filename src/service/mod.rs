//! Use cases shared by the API, the pages and the command line: applying
//! commission plans, issuing and checking API tokens, the audit log, and
//! reconciliation as payment ops steer it.
//! Nothing here speaks HTTP.

pub mod audit;
pub mod calendars;
pub mod certificates;
pub mod ops;
pub mod plans;
pub mod portal_links;
pub mod reconciliation;
pub mod tokens;
pub mod webhooks;
