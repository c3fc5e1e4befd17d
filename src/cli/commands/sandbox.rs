//! `fenrun sandbox-gateway`: the sandbox payment gateway as its own process,
//! over plain HTTP or, given a certificate and key, over HTTPS (so fenrun
//! reaches it as it reaches a real gateway, trusting the certificate's
//! issuer through `gateway_ca_file`).

use std::path::PathBuf;
use std::process::ExitCode;

use fenrun_integrations::sandbox::{Faults, SandboxConfig, SandboxGateway, SandboxTls};
use secrecy::SecretString;

/// Serve HTTPS instead of HTTP: both flags or neither.
#[derive(Debug, Clone, clap::Args)]
pub struct TlsArgs {
    /// PEM certificate chain to serve HTTPS with (server certificate first;
    /// its subjectAltName must name the host clients use).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of that certificate.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

impl TlsArgs {
    fn identity(&self) -> anyhow::Result<Option<SandboxTls>> {
        let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) else {
            return Ok(None);
        };
        let read = |flag: &str, path: &PathBuf| {
            std::fs::read_to_string(path)
                .map_err(|error| anyhow::anyhow!("{flag}: reading {}: {error}", path.display()))
        };
        Ok(Some(SandboxTls {
            cert_chain_pem: read("--tls-cert", cert)?,
            private_key_pem: SecretString::from(read("--tls-key", key)?),
        }))
    }
}

pub async fn run(
    port: u16,
    host: String,
    faults: Option<String>,
    tls: TlsArgs,
) -> anyhow::Result<ExitCode> {
    let faults = match faults {
        Some(text) => {
            serde_json::from_str(&text).map_err(|error| anyhow::anyhow!("--faults: {error}"))?
        }
        None => Faults::default(),
    };
    let address: std::net::SocketAddr = format!("{host}:{port}")
        .parse()
        .map_err(|_| anyhow::anyhow!("--host {host:?} --port {port} is not an address"))?;
    let sandbox = SandboxGateway::start(SandboxConfig {
        listen: address,
        faults,
        tls: tls.identity()?,
        ..Default::default()
    })
    .await?;
    tracing::warn!(address = %sandbox.base_url(), "SANDBOX payment gateway (WeChat Pay v3 and Alipay gateway.do dialects, test keys): no real money moves");
    println!("sandbox gateway listening on {}", sandbox.base_url());
    crate::app::shutdown_signal().await;
    sandbox.shutdown().await;
    Ok(ExitCode::SUCCESS)
}
