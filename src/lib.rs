//! # fenrun
//!
//! Payout and compliance orchestrator for social distribution commerce (分销):
//! confirmed orders → T+3 hold → commission (≤ 3 levels) → double-entry ledger
//! → withdrawals with tax withholding → gateway transfer → certificate.
//!
//! # Layout
//! Arrows point one way: [`cli`], [`api`], [`web`] → [`service`], [`engine`]
//! → [`domain`], [`store`], [`vault`]; [`state`] is imported by the layers
//! that serve and imports none of them; [`app`] composes everything.
//!
//! - [`domain`]: pure rules — money, ids, calendar, commission plans, ledger transfers, roles, tax, the banks we pay to.
//! - [`store`]: all SQL, for SQLite and PostgreSQL, behind one [`store::Store`].
//! - [`engine`]: the workflows at run time — definitions and `workflows check`, the settlement,
//!   withdrawal, certificate and declaration steps, the payout gateway adapter, workers and scheduler.
//! - [`service`]: use cases shared by the API, the pages and the command line — plans, tokens,
//!   the audit log, the ops views and actions, certificate verification. No HTTP.
//! - [`api`]: the HTTP API (axum) per resource, its errors, auth, rate limits, `/metrics`,
//!   the OpenAPI document, and the HTTP/1.1 server (header and body timeouts, client address).
//! - [`web`]: the HTML pages (server-side sessions, the accountant's `/tax` page, the ops console).
//! - [`state`]: [`state::AppState`], what every handler and worker reaches, and the rate limiter it carries.
//! - [`app`]: `Application::build(settings)` → `run_until_stopped(shutdown)`; merges the API and the pages.
//! - [`config`]: layered, validated settings, the master key sources among them.
//! - [`clock`]: injectable time, real or simulated.
//! - [`vault`]: envelope encryption (AES-256-GCM) under a rotatable master key; sealing identities
//!   and payout accounts for their rows, and `keys rotate` ([`vault::credentials`]).
//! - [`certificate`]: withholding certificates — PDF (krilla, embedded Noto Sans SC) and Ed25519 signing/verification.
//! - [`telemetry`]: logging set-up, and the Prometheus recorders ([`telemetry::metrics`]).
//! - [`cli`]: the `fenrun` command line, one module per subcommand; the developer tools
//!   `fenrun demo` ([`cli::demo`]) and `fenrun bench` ([`cli::bench`]).

#![forbid(unsafe_code)]

pub mod api;
pub mod app;
pub mod certificate;
pub mod cli;
pub mod clock;
pub mod config;
pub mod domain;
pub mod engine;
pub mod service;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod vault;
pub mod web;
