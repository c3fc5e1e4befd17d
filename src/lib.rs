//! # fenrun
//!
//! Payout and compliance orchestrator for social distribution commerce (分销):
//! confirmed orders → T+3 hold → commission (≤ 3 levels) → double-entry ledger
//! → withdrawals with tax withholding → gateway transfer → certificate.
//!
//! # Layout
//! - [`domain`]: pure rules — money, ids, calendar, commission plans, ledger transfers, roles.
//! - [`store`]: all SQL, for SQLite and PostgreSQL, behind one [`store::Store`].
//! - [`engine`]: workflow definitions and scheduled jobs from `workflows/*.toml`, and running them.
//! - [`api`]: the HTTP API (axum), its errors, auth and OpenAPI document.
//! - [`web`]: the HTML pages (server-side sessions, the accountant's `/tax` page, the ops console).
//! - [`app`]: `Application::build(settings)` → `run_until_stopped(shutdown)`.
//! - [`server`]: serving HTTP/1.1 with header and body timeouts and the client's address.
//! - [`config`]: layered, validated settings.
//! - [`clock`]: injectable time, real or simulated.
//! - [`gateway`]: the payout gateway of this process (sandbox or WeChat Pay v3, from `integrations/`).
//! - [`certificate`]: withholding certificates — PDF (krilla, embedded Noto Sans SC) and Ed25519 signing/verification.
//! - [`declaration`]: the monthly withholding declaration as CSV and XLSX, and the schedule's preparer.
//! - [`audit`]: the append-only log of admin and ops actions.
//! - [`plans`], [`tokens`]: applying commission plans; issuing and checking API tokens.
//! - [`cli`]: the `fenrun` command line; [`bench`]: `fenrun bench`; [`demo`]: `fenrun demo`.
//! - [`telemetry`]: logging set-up; [`monitoring`]: Prometheus metrics at `/metrics`.
//! - [`credentials`]: sealing identities and payout accounts for their rows; `keys rotate`.
//! - [`vault`]: envelope encryption (AES-256-GCM) of payout credentials under a rotatable master key.

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
