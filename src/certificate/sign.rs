//! Ed25519 signing and verification of certificates: the [`CertificateSigner`]
//! writes the detached manifest (`{number}.json`) beside a rendered PDF, and
//! [`verify`] checks a (PDF, manifest) pair against the published keys. The
//! scheme is described in the module doc of [`super`].

use std::fmt;
use std::fs;
use std::io::Read;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::rand::SystemRandom;
use ring::signature::{self, Ed25519KeyPair, KeyPair};
use secrecy::zeroize::Zeroizing;
use serde::{Deserialize, Serialize};

use super::{
    CertificateData, CertificateError, CertificateFacts, SCHEME_VERSION, render_pdf, validate,
};
use crate::domain::digest::sha256_hex;
use crate::domain::money::Money;

/// Largest manifest [`verify`] reads, in bytes; a real one is about 1 KiB.
pub const MAX_MANIFEST_BYTES: usize = 16 * 1024;
/// A key file larger than this is not a PKCS#8 Ed25519 key (those are
/// 48–85 bytes as DER, about 120 as PEM); it is not read into memory.
const MAX_KEY_FILE_BYTES: u64 = 4096;
/// Hex digits of SHA-256 of the public key kept in a key id: 64 bits.
const KEY_ID_HEX_DIGITS: usize = 16;
const PEM_BEGIN: &str = "-----BEGIN PRIVATE KEY-----";
const PEM_END: &str = "-----END PRIVATE KEY-----";

/// Signs certificates with one Ed25519 key. `Debug` shows the key id only.
pub struct CertificateSigner {
    key_pair: Ed25519KeyPair,
    key_id: String,
}

/// A certificate ready to hand out: the PDF and its manifest, to be stored
/// and delivered together (`{number}.pdf`, `{number}.json`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCertificate {
    pub number: String,
    pub pdf: Vec<u8>,
    /// The manifest in its canonical form: store and serve it byte for byte.
    pub manifest_json: String,
    pub verification_code: String,
    pub key_id: String,
}

/// What [`verify`] concluded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    /// The PDF is the one the key's holder signed, with these figures.
    Genuine {
        number: String,
        /// 本次收入.
        gross: Money,
        /// 本次扣缴税额.
        tax: Money,
        /// 实付金额.
        net: Money,
        key_id: String,
    },
    NotGenuine(Rejection),
}

/// Why a (PDF, manifest) pair is not genuine.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("the manifest is larger than {MAX_MANIFEST_BYTES} bytes")]
    ManifestTooLarge,
    #[error("the manifest is not a certificate manifest: {0}")]
    MalformedManifest(String),
    #[error("the manifest has been reformatted or edited (not in canonical form)")]
    NotCanonical,
    #[error("unsupported manifest version {0:?}")]
    UnsupportedVersion(String),
    #[error("the manifest was signed with unknown key {0:?}")]
    UnknownKey(String),
    #[error("the manifest's signature does not verify")]
    BadSignature,
    #[error("the PDF is not the one the manifest was signed for")]
    PdfMismatch,
    #[error("the manifest's verification code does not match its facts")]
    CodeMismatch,
    #[error("no certificate with this PDF was issued here; supply its manifest ({{number}}.json)")]
    UnknownPdf,
}

impl Rejection {
    /// A stable code for API answers and scripts.
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::ManifestTooLarge => "manifest_too_large",
            Rejection::MalformedManifest(_) => "malformed_manifest",
            Rejection::NotCanonical => "manifest_not_canonical",
            Rejection::UnsupportedVersion(_) => "unsupported_version",
            Rejection::UnknownKey(_) => "unknown_key",
            Rejection::BadSignature => "bad_signature",
            Rejection::PdfMismatch => "pdf_mismatch",
            Rejection::CodeMismatch => "code_mismatch",
            Rejection::UnknownPdf => "unknown_pdf",
        }
    }
}

/// The manifest file: the signed part and its signature. Field order is the
/// canonical order.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    signed: SignedPart,
    /// Ed25519 signature, standard base64 with padding.
    signature: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignedPart {
    version: String,
    key_id: String,
    /// SHA-256 of the PDF bytes, lower-case hex.
    pdf_sha256: String,
    /// The 验证码 printed on the PDF.
    verification_code: String,
    certificate: CertificateFacts,
}

impl SignedPart {
    /// The signed message: the scheme label, a newline, the compact JSON.
    fn message(&self) -> Result<Vec<u8>, serde_json::Error> {
        let mut message = format!("{SCHEME_VERSION}\n").into_bytes();
        serde_json::to_writer(&mut message, self)?;
        Ok(message)
    }
}

impl CertificateSigner {
    /// A signer for a PKCS#8 Ed25519 private key (v1, as `openssl genpkey
    /// -algorithm ed25519` writes, or v2, as [`Self::generate_pkcs8`] does).
    pub fn from_pkcs8(der: &[u8]) -> Result<CertificateSigner, CertificateError> {
        let key_pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
            .map_err(|_| CertificateError::Key("not a PKCS#8 Ed25519 private key"))?;
        let key_id = key_id_of(key_pair.public_key().as_ref());
        Ok(CertificateSigner { key_pair, key_id })
    }

    /// A signer whose key is derived from a 32-byte Ed25519 seed (RFC 8032
    /// private key), e.g. one the vault derives from the master key: the
    /// same seed always gives the same key and key id.
    pub fn from_seed(seed: &[u8; 32]) -> Result<CertificateSigner, CertificateError> {
        let key_pair = Ed25519KeyPair::from_seed_unchecked(seed)
            .map_err(|_| CertificateError::Key("not an Ed25519 seed"))?;
        let key_id = key_id_of(key_pair.public_key().as_ref());
        Ok(CertificateSigner { key_pair, key_id })
    }

    /// Reads a PKCS#8 key file, DER or PEM (`-----BEGIN PRIVATE KEY-----`).
    pub fn from_pkcs8_file(path: &Path) -> Result<CertificateSigner, CertificateError> {
        let file_error = |source| CertificateError::KeyFile {
            path: path.to_path_buf(),
            source,
        };
        let file = fs::File::open(path).map_err(file_error)?;
        let mut bytes = Zeroizing::new(Vec::new());
        file.take(MAX_KEY_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(file_error)?;
        if bytes.len() as u64 > MAX_KEY_FILE_BYTES {
            return Err(CertificateError::Key("key file is too large"));
        }
        match std::str::from_utf8(&bytes) {
            Ok(text) if text.trim_start().starts_with(PEM_BEGIN) => {
                let body: Zeroizing<String> = Zeroizing::new(
                    text.trim()
                        .strip_prefix(PEM_BEGIN)
                        .and_then(|rest| rest.strip_suffix(PEM_END))
                        .ok_or(CertificateError::Key("malformed PEM private key"))?
                        .split_whitespace()
                        .collect(),
                );
                let der = Zeroizing::new(
                    STANDARD
                        .decode(body.as_bytes())
                        .map_err(|_| CertificateError::Key("malformed PEM private key"))?,
                );
                CertificateSigner::from_pkcs8(&der)
            }
            _ => CertificateSigner::from_pkcs8(&bytes),
        }
    }

    /// A fresh PKCS#8 (v2) Ed25519 private key, for `fenrun` key set-up.
    pub fn generate_pkcs8() -> Result<Zeroizing<Vec<u8>>, CertificateError> {
        let document = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .map_err(|_| CertificateError::Key("the system random source failed"))?;
        Ok(Zeroizing::new(document.as_ref().to_vec()))
    }

    /// A signer with a fresh key, for development and tests.
    pub fn generate() -> Result<CertificateSigner, CertificateError> {
        CertificateSigner::from_pkcs8(&CertificateSigner::generate_pkcs8()?)
    }

    /// First 16 hex digits of SHA-256 of the raw public key.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The raw 32-byte Ed25519 public key.
    pub fn public_key(&self) -> &[u8] {
        self.key_pair.public_key().as_ref()
    }

    /// The public key as a JWK (RFC 8037, `OKP`/`Ed25519`) whose `kid` is the
    /// key id, for publishing at `/v1/tax/keys`.
    pub fn public_key_jwk_like(&self) -> serde_json::Value {
        serde_json::json!({
            "kty": "OKP",
            "crv": "Ed25519",
            "alg": "EdDSA",
            "use": "sig",
            "kid": self.key_id,
            "x": URL_SAFE_NO_PAD.encode(self.public_key()),
        })
    }

    /// Signs `pdf`, which must be [`render_pdf`]`(data)`: the manifest states
    /// `data`'s facts and binds them to the PDF's hash.
    pub fn sign(
        &self,
        pdf: Vec<u8>,
        data: &CertificateData,
    ) -> Result<SignedCertificate, CertificateError> {
        validate(data)?;
        let certificate = CertificateFacts::of(data);
        let verification_code = certificate.code()?;
        let signed = SignedPart {
            version: SCHEME_VERSION.to_owned(),
            key_id: self.key_id.clone(),
            pdf_sha256: sha256_hex(&pdf),
            verification_code: verification_code.clone(),
            certificate,
        };
        let signature = self.key_pair.sign(&signed.message()?);
        let manifest = Manifest {
            signed,
            signature: STANDARD.encode(signature.as_ref()),
        };
        Ok(SignedCertificate {
            number: data.number.clone(),
            pdf,
            manifest_json: serde_json::to_string(&manifest)?,
            verification_code,
            key_id: self.key_id.clone(),
        })
    }

    /// Renders and signs `data`: the one call an issuing step needs.
    pub fn issue(&self, data: &CertificateData) -> Result<SignedCertificate, CertificateError> {
        self.sign(render_pdf(data)?, data)
    }
}

impl fmt::Debug for CertificateSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateSigner")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// The key id of a raw Ed25519 public key: the first 16 hex digits of its
/// SHA-256.
pub fn key_id_of(public_key: &[u8]) -> String {
    let mut hex = sha256_hex(public_key);
    hex.truncate(KEY_ID_HEX_DIGITS);
    hex
}

/// Checks that `manifest` is a canonical manifest signed by one of
/// `public_keys` (key id, raw 32-byte Ed25519 key) and that `pdf` is the PDF
/// it was signed for. Whitespace around the manifest is ignored; any other
/// change to either file makes the pair not genuine.
pub fn verify<K, B>(pdf: &[u8], manifest: &str, public_keys: &[(K, B)]) -> Verification
where
    K: AsRef<str>,
    B: AsRef<[u8]>,
{
    match check(pdf, manifest, public_keys) {
        Ok(genuine) => genuine,
        Err(rejection) => Verification::NotGenuine(rejection),
    }
}

fn check<K, B>(
    pdf: &[u8],
    manifest: &str,
    public_keys: &[(K, B)],
) -> Result<Verification, Rejection>
where
    K: AsRef<str>,
    B: AsRef<[u8]>,
{
    if manifest.len() > MAX_MANIFEST_BYTES {
        return Err(Rejection::ManifestTooLarge);
    }
    let text = manifest.trim();
    let parsed: Manifest = serde_json::from_str(text)
        .map_err(|error| Rejection::MalformedManifest(error.to_string()))?;
    let canonical = serde_json::to_string(&parsed)
        .map_err(|error| Rejection::MalformedManifest(error.to_string()))?;
    if canonical != text {
        return Err(Rejection::NotCanonical);
    }
    let signed = &parsed.signed;
    if signed.version != SCHEME_VERSION {
        return Err(Rejection::UnsupportedVersion(signed.version.clone()));
    }
    let public_key = public_keys
        .iter()
        .find(|(key_id, _)| key_id.as_ref() == signed.key_id)
        .map(|(_, key)| key.as_ref())
        .ok_or_else(|| Rejection::UnknownKey(signed.key_id.clone()))?;
    let signature = STANDARD
        .decode(&parsed.signature)
        .map_err(|_| Rejection::BadSignature)?;
    let message = signed
        .message()
        .map_err(|error| Rejection::MalformedManifest(error.to_string()))?;
    signature::UnparsedPublicKey::new(&signature::ED25519, public_key)
        .verify(&message, &signature)
        .map_err(|_| Rejection::BadSignature)?;
    // Signed by the key's holder; now: is this the PDF, and do the facts
    // agree with the code printed on it?
    if sha256_hex(pdf) != signed.pdf_sha256 {
        return Err(Rejection::PdfMismatch);
    }
    let code = signed
        .certificate
        .code()
        .map_err(|error| Rejection::MalformedManifest(error.to_string()))?;
    if code != signed.verification_code {
        return Err(Rejection::CodeMismatch);
    }
    let facts = &signed.certificate;
    Ok(Verification::Genuine {
        number: facts.number.clone(),
        gross: Money::from_fen(facts.gross_fen),
        tax: Money::from_fen(facts.withheld_now_fen),
        net: Money::from_fen(facts.net_paid_fen),
        key_id: signed.key_id.clone(),
    })
}
