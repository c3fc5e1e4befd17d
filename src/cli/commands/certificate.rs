//! `fenrun certificate verify`: say whether a certificate PDF is genuine,
//! offline against published keys or against the database.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::config::Settings;

use super::super::CertificateCommand;
use super::open_store;

pub async fn run(settings: &Settings, command: CertificateCommand) -> anyhow::Result<ExitCode> {
    let CertificateCommand::Verify {
        file,
        manifest,
        keys,
        json,
    } = command;
    let genuine = verify_certificate_file(settings, &file, manifest, keys.as_deref(), json).await?;
    Ok(if genuine {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `fenrun certificate verify`: prints the verdict; true when genuine.
async fn verify_certificate_file(
    settings: &Settings,
    file: &Path,
    manifest: Option<PathBuf>,
    keys: Option<&Path>,
    json: bool,
) -> anyhow::Result<bool> {
    use crate::certificate::{Verification, verify};
    let read = |path: &Path, limit: u64| -> anyhow::Result<Vec<u8>> {
        let size = std::fs::metadata(path)
            .map_err(|error| anyhow::anyhow!("{}: {error}", path.display()))?
            .len();
        anyhow::ensure!(
            size <= limit,
            "{} is larger than {limit} bytes",
            path.display()
        );
        std::fs::read(path).map_err(|error| anyhow::anyhow!("{}: {error}", path.display()))
    };
    let pdf = read(
        file,
        crate::service::certificates::MAX_VERIFY_PDF_BYTES as u64,
    )?;
    let beside = file.with_extension("json");
    let manifest_path = manifest.or_else(|| beside.is_file().then_some(beside));
    let manifest = manifest_path
        .map(|path| -> anyhow::Result<String> {
            let bytes = read(&path, crate::certificate::MAX_MANIFEST_BYTES as u64)?;
            String::from_utf8(bytes)
                .map_err(|_| anyhow::anyhow!("{}: not UTF-8 text", path.display()))
        })
        .transpose()?;
    let verification = match keys {
        Some(keys_path) => {
            let document: serde_json::Value = serde_json::from_slice(&read(keys_path, 1 << 20)?)
                .map_err(|error| anyhow::anyhow!("{}: {error}", keys_path.display()))?;
            let keys = crate::certificate::archive::parse_keys_document(&document)
                .map_err(|error| anyhow::anyhow!("{}: {error}", keys_path.display()))?;
            let manifest = manifest.ok_or_else(|| {
                anyhow::anyhow!(
                    "no manifest beside {}: pass --manifest (offline verification needs it)",
                    file.display()
                )
            })?;
            verify(&pdf, &manifest, &keys)
        }
        None => {
            let store = open_store(settings).await?;
            let verification =
                crate::engine::certificate::verify_upload(&store, &pdf, manifest.as_deref()).await;
            store.close().await;
            verification?
        }
    };
    let genuine = matches!(verification, Verification::Genuine { .. });
    match (&verification, json) {
        (
            Verification::Genuine {
                number,
                gross,
                tax,
                net,
                key_id,
            },
            true,
        ) => println!(
            "{}",
            serde_json::json!({"genuine": true, "number": number, "gross": gross, "tax": tax, "net": net, "key_id": key_id})
        ),
        (Verification::NotGenuine(rejection), true) => println!(
            "{}",
            serde_json::json!({"genuine": false, "reason_code": rejection.code(), "reason": rejection.to_string()})
        ),
        (
            Verification::Genuine {
                number,
                gross,
                tax,
                net,
                key_id,
            },
            false,
        ) => println!(
            "genuine: certificate {number}: gross {gross}, tax withheld {tax}, net paid {net} (signed with key {key_id})"
        ),
        (Verification::NotGenuine(rejection), false) => {
            println!("NOT genuine ({}): {rejection}", rejection.code())
        }
    }
    Ok(genuine)
}
