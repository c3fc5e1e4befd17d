//! A month's certificates as one zip (`{month}.zip`): every certificate's
//! `{number}.pdf` and `{number}.json`, then `keys.json` with the published
//! keys, so the archive verifies offline. Written page by page into any
//! `Write` as the rows are read, never built in memory: the HTTP handler
//! streams it through a bounded channel, the benchmark into a counter.

use std::io::{self, Write};

use bytes::Bytes;
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use zip::CompressionMethod;
use zip::write::SimpleFileOptions;

use crate::domain::tax::Month;
use crate::store::{Store, StoreError};

/// Certificates read per query: about 3 MiB of PDFs.
pub const PAGE_SIZE: i64 = 100;
/// Bytes handed to the channel at a time.
const CHUNK_BYTES: usize = 64 * 1024;
/// Chunks in flight between the writer thread and the HTTP body: the
/// backpressure that keeps memory flat when the client reads slowly.
const CHUNKS_IN_FLIGHT: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("zip: {0}")]
    Zip(#[from] zip::result::ZipError),
    #[error("writing the archive: {0}")]
    Io(#[from] io::Error),
}

/// What went into an archive.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ArchiveStats {
    pub certificates: u64,
    pub bytes: u64,
}

/// Writes the zip of `tax_month` into `out`, reading the rows through
/// `runtime` (call it from a blocking thread, never from async code).
pub fn write_month_zip<W: Write>(
    runtime: &Handle,
    store: &Store,
    tax_month: Month,
    out: W,
) -> Result<ArchiveStats, ArchiveError> {
    let mut counted = CountingWriter {
        inner: out,
        bytes: 0,
    };
    let mut zip = zip::ZipWriter::new_stream(&mut counted);
    // PDFs are compressed inside already; deflating them again costs CPU for
    // a percent or two.
    let stored = SimpleFileOptions::default()
        .compression_method(CompressionMethod::Stored)
        .large_file(false);
    let deflated = SimpleFileOptions::default().compression_method(CompressionMethod::Deflated);
    let mut certificates = 0;
    let mut after: Option<String> = None;
    loop {
        let page =
            runtime.block_on(store.certificate_files(tax_month, after.as_deref(), PAGE_SIZE))?;
        for (number, pdf, manifest) in &page {
            zip.start_file(format!("{number}.pdf"), stored)?;
            zip.write_all(pdf)?;
            zip.start_file(format!("{number}.json"), deflated)?;
            zip.write_all(manifest.as_bytes())?;
            certificates += 1;
        }
        match page.last() {
            Some((number, _, _)) if page.len() as i64 == PAGE_SIZE => after = Some(number.clone()),
            _ => break,
        }
    }
    let keys = runtime.block_on(store.certificate_keys())?;
    zip.start_file("keys.json", deflated)?;
    serde_json::to_writer_pretty(&mut zip, &keys_document(&keys)).map_err(io::Error::other)?;
    zip.finish()?;
    counted.flush()?;
    Ok(ArchiveStats {
        certificates,
        bytes: counted.bytes,
    })
}

/// The published keys as `/v1/tax/keys` and `keys.json` show them.
pub fn keys_document(
    keys: &[(String, Vec<u8>, chrono::DateTime<chrono::Utc>)],
) -> serde_json::Value {
    use base64::Engine as _;
    let keys: Vec<serde_json::Value> = keys
        .iter()
        .map(|(key_id, public_key, first_used_at)| {
            let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(public_key);
            serde_json::json!({
                "key_id": key_id,
                "algorithm": "Ed25519",
                "public_key": x,
                "first_used_at": first_used_at,
                "jwk": {"kty": "OKP", "crv": "Ed25519", "x": x, "kid": key_id, "use": "sig", "alg": "EdDSA"},
            })
        })
        .collect();
    serde_json::json!({ "scheme": super::SCHEME_VERSION, "keys": keys })
}

/// The (key id, raw public key) pairs of a keys document, for [`super::verify`].
pub fn parse_keys_document(document: &serde_json::Value) -> Result<Vec<(String, Vec<u8>)>, String> {
    use base64::Engine as _;
    let keys = document
        .get("keys")
        .and_then(serde_json::Value::as_array)
        .ok_or("not a keys document: no \"keys\" list")?;
    keys.iter()
        .map(|key| {
            let key_id = key.get("key_id").and_then(serde_json::Value::as_str);
            let public_key = key.get("public_key").and_then(serde_json::Value::as_str);
            match (key_id, public_key) {
                (Some(key_id), Some(public_key)) => {
                    base64::engine::general_purpose::URL_SAFE_NO_PAD
                        .decode(public_key)
                        .map(|bytes| (key_id.to_owned(), bytes))
                        .map_err(|_| format!("key {key_id}: public_key is not base64url"))
                }
                _ => Err("a key without key_id or public_key".to_owned()),
            }
        })
        .collect()
}

/// Starts writing the zip of `tax_month` on a blocking thread and returns
/// the receiving end of its chunks. An error after the first chunk can only
/// cut the body short (the status is sent), so it is logged and sent as an
/// error item, which aborts the response.
pub fn stream_month_zip(
    store: std::sync::Arc<Store>,
    tax_month: Month,
) -> mpsc::Receiver<Result<Bytes, io::Error>> {
    let (sender, receiver) = mpsc::channel(CHUNKS_IN_FLIGHT);
    let runtime = Handle::current();
    tokio::task::spawn_blocking(move || {
        let writer = ChannelWriter {
            sender: sender.clone(),
            buffer: Vec::with_capacity(CHUNK_BYTES),
        };
        match write_month_zip(&runtime, &store, tax_month, writer) {
            Ok(stats) => {
                tracing::info!(
                    %tax_month,
                    certificates = stats.certificates,
                    bytes = stats.bytes,
                    "certificate archive sent"
                );
            }
            Err(ArchiveError::Io(error)) if error.kind() == io::ErrorKind::BrokenPipe => {
                tracing::info!(
                    %tax_month,
                    "certificate archive download abandoned by the client"
                );
            }
            Err(error) => {
                tracing::error!(%tax_month, error = %error, "certificate archive failed midway");
                let _ = sender.blocking_send(Err(io::Error::other(error.to_string())));
            }
        }
    });
    receiver
}

/// Hands full chunks to the channel, blocking while it is full.
struct ChannelWriter {
    sender: mpsc::Sender<Result<Bytes, io::Error>>,
    buffer: Vec<u8>,
}

impl ChannelWriter {
    fn send_buffer(&mut self) -> io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buffer, Vec::with_capacity(CHUNK_BYTES));
        self.sender
            .blocking_send(Ok(Bytes::from(chunk)))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the client went away"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.buffer.extend_from_slice(bytes);
        if self.buffer.len() >= CHUNK_BYTES {
            self.send_buffer()?;
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send_buffer()
    }
}

/// Counts what passes through (the archive's size for logs and the benchmark).
struct CountingWriter<W> {
    inner: W,
    bytes: u64,
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let written = self.inner.write(bytes)?;
        self.bytes += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
