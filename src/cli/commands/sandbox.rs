//! `fenrun sandbox-gateway`: the sandbox payment gateway as its own process.

use std::process::ExitCode;

pub async fn run(port: u16, host: String, faults: Option<String>) -> anyhow::Result<ExitCode> {
    let faults = match faults {
        Some(text) => {
            serde_json::from_str(&text).map_err(|error| anyhow::anyhow!("--faults: {error}"))?
        }
        None => fenrun_integrations::sandbox::Faults::default(),
    };
    let address: std::net::SocketAddr = format!("{host}:{port}")
        .parse()
        .map_err(|_| anyhow::anyhow!("--host {host:?} --port {port} is not an address"))?;
    let sandbox = fenrun_integrations::sandbox::SandboxGateway::start(
        fenrun_integrations::sandbox::SandboxConfig {
            listen: address,
            faults,
            ..Default::default()
        },
    )
    .await?;
    tracing::warn!(address = %sandbox.base_url(), "SANDBOX payment gateway (WeChat Pay v3 and Alipay gateway.do dialects, test keys): no real money moves");
    println!("sandbox gateway listening on {}", sandbox.base_url());
    crate::app::shutdown_signal().await;
    sandbox.shutdown().await;
    Ok(ExitCode::SUCCESS)
}
