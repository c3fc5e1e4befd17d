//! `fenrun bench settle | replan | month-close | queue | certificates | withdraw | reconcile`: the benchmarks
//! of `cli::bench`, on SQLite or a scratch database on the PostgreSQL
//! server of `--database-url`.

use std::process::ExitCode;

use secrecy::ExposeSecret;

use crate::config::Settings;

use super::super::BenchCommand;

pub async fn run(settings: &Settings, command: BenchCommand) -> anyhow::Result<ExitCode> {
    // Only an explicit --database-url / FENRUN_DATABASE_URL picks PostgreSQL.
    let url = settings.database_url.expose_secret().to_owned();
    let server = url.starts_with("postgres").then_some(url.as_str());
    match command {
        BenchCommand::Settle {
            orders,
            concurrency,
            batch,
            runs,
            plan,
        } => {
            crate::cli::bench::settle(
                orders,
                concurrency.max(1),
                usize::from(batch),
                runs.max(1),
                plan,
                server,
            )
            .await?;
        }
        BenchCommand::MonthClose { distributors, runs } => {
            crate::cli::bench::month_close::month_close(distributors.max(1), runs.max(1), server)
                .await?;
        }
        BenchCommand::Reconcile { lines, runs } => {
            crate::cli::bench::reconcile::reconcile(lines.max(1), runs.max(1), server).await?;
        }
        BenchCommand::Queue { jobs } => crate::cli::bench::queue(jobs, server).await?,
        BenchCommand::Replan { orders, runs } => {
            crate::cli::bench::calendar::replan(orders.max(1), runs.max(1), server).await?;
        }
        BenchCommand::Certificates {
            count,
            concurrency,
            runs,
        } => {
            crate::cli::bench::certificates::certificates(
                count.max(1),
                concurrency.max(1),
                runs.max(1),
                server,
            )
            .await?;
        }
        BenchCommand::Withdraw {
            channel,
            count,
            concurrency,
            latency_ms,
            runs,
        } => {
            crate::cli::bench::withdraw::withdraw(
                channel,
                count,
                concurrency.max(1),
                &latency_ms,
                runs.max(1),
                server,
            )
            .await?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
