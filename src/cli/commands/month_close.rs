//! `fenrun month-close run --month YYYY-MM`: closes a month by hand, as the
//! schedule and `POST /v1/ops/month-close/{YYYY-MM}` do, and says what it
//! wrote. Safe beside a running service: a month is closed once, and a
//! distributor already closed is skipped.

use std::process::ExitCode;
use std::sync::Arc;

use crate::app::Workflows;
use crate::clock::SystemClock;
use crate::config::Settings;
use crate::engine::month_close::{MonthCloseSettings, MonthCloser};
use crate::service::audit::{self, Actor};

use super::super::MonthCloseCommand;
use super::open_store;

pub async fn run(settings: &Settings, command: MonthCloseCommand) -> anyhow::Result<ExitCode> {
    let MonthCloseCommand::Run { month } = command;
    let workflows = Workflows::load(&settings.workflows_dir)?;
    let store = Arc::new(open_store(settings).await?);
    let closer = MonthCloser::new(
        store.clone(),
        Arc::new(SystemClock),
        workflows.order_settlement.time_zone(),
        MonthCloseSettings::load(&settings.workflows_dir)?,
    );
    let outcome = closer.close(month).await?;
    let record = &outcome.record;
    if outcome.ran {
        audit::record(
            &store,
            &Actor::command_line(),
            "month.close",
            &month.to_string(),
            None,
            Some(serde_json::json!({
                "statements": record.statements,
                "team_bonuses": record.bonuses,
                "team_bonus_total": record.bonus_total,
                "plan_version": record.plan_version,
            })),
            chrono::Utc::now(),
        )
        .await;
        println!(
            "{month} closed: {} statements, {} team bonuses totalling {} (plan version {})",
            record.statements, record.bonuses, record.bonus_total, record.plan_version
        );
    } else {
        println!(
            "{month} was closed before: {} statements, {} team bonuses totalling {}; nothing changed",
            record.statements, record.bonuses, record.bonus_total
        );
    }
    store.close().await;
    Ok(ExitCode::SUCCESS)
}
