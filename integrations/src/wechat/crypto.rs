//! The cryptography of WeChat Pay API v3, shared by the client and the
//! sandbox: SHA256withRSA signing and verification (ring), the exact signed
//! message formats, the `Authorization` header, RSA-OAEP-SHA1 for sensitive
//! fields (the `rsa` crate, since ring has no OAEP), AES-256-GCM for callback
//! resources (ring), and random nonces (ring's `SystemRandom`).
//!
//! Nothing here logs, and no error carries key material.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{
    RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_SHA256, RsaKeyPair, RsaPublicKeyComponents,
};
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey};
use rsa::traits::PublicKeyParts;
use secrecy::{ExposeSecret, SecretString};

/// The `Authorization` scheme of API v3.
pub(crate) const AUTH_SCHEME: &str = "WECHATPAY2-SHA256-RSA2048";

/// How far a signed timestamp may be from our clock. The official helper
/// rejects answers more than 5 minutes old; we hold requests, answers and
/// callbacks to the same window in both directions.
pub(crate) const TIMESTAMP_WINDOW_SECS: i64 = 300;

/// Nonce length of the official Go helper.
pub(crate) const REQUEST_NONCE_LEN: usize = 32;

/// Length of the AES-GCM nonce WeChat sends as a 12-character string.
pub(crate) const RESOURCE_NONCE_LEN: usize = NONCE_LEN;

/// Why a key was refused. Static text only: a key parser's own message could
/// quote the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct KeyError(pub(crate) &'static str);

/// The message a request signature covers: exactly five lines, each ending in
/// `\n`, the last one too (the body is empty for GET, its newline is not).
pub(crate) fn request_message(
    method: &str,
    canonical_url: &str,
    timestamp: &str,
    nonce: &str,
    body: &[u8],
) -> Vec<u8> {
    let mut message = Vec::with_capacity(canonical_url.len() + body.len() + 64);
    for line in [
        method.as_bytes(),
        canonical_url.as_bytes(),
        timestamp.as_bytes(),
        nonce.as_bytes(),
        body,
    ] {
        message.extend_from_slice(line);
        message.push(b'\n');
    }
    message
}

/// The message an answer or callback signature covers: three lines, each
/// ending in `\n`.
pub(crate) fn answer_message(timestamp: &str, nonce: &str, body: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(body.len() + 64);
    for line in [timestamp.as_bytes(), nonce.as_bytes(), body] {
        message.extend_from_slice(line);
        message.push(b'\n');
    }
    message
}

/// The `Authorization` header value; `serial_no` is the *merchant*
/// certificate's serial.
pub(crate) fn authorization(
    mchid: &str,
    nonce: &str,
    signature: &str,
    timestamp: &str,
    serial_no: &str,
) -> String {
    format!(
        r#"{AUTH_SCHEME} mchid="{mchid}",nonce_str="{nonce}",signature="{signature}",timestamp="{timestamp}",serial_no="{serial_no}""#
    )
}

/// The fields of an `Authorization` header, as the sandbox reads them.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct AuthorizationFields<'a> {
    pub(crate) mchid: &'a str,
    pub(crate) nonce_str: &'a str,
    pub(crate) signature: &'a str,
    pub(crate) timestamp: &'a str,
    pub(crate) serial_no: &'a str,
}

/// Splits an `Authorization` header into its fields; `None` if the scheme is
/// not ours or a field is missing or repeated. Field order does not matter.
pub(crate) fn parse_authorization(header: &str) -> Option<AuthorizationFields<'_>> {
    let rest = header.strip_prefix(AUTH_SCHEME)?.strip_prefix(' ')?;
    let mut fields = AuthorizationFields::default();
    let mut seen = 0u8;
    for pair in rest.split(',') {
        let (key, value) = pair.trim().split_once('=')?;
        let value = value.strip_prefix('"')?.strip_suffix('"')?;
        let (slot, bit) = match key {
            "mchid" => (&mut fields.mchid, 1),
            "nonce_str" => (&mut fields.nonce_str, 2),
            "signature" => (&mut fields.signature, 4),
            "timestamp" => (&mut fields.timestamp, 8),
            "serial_no" => (&mut fields.serial_no, 16),
            _ => return None,
        };
        if seen & bit != 0 {
            return None;
        }
        seen |= bit;
        *slot = value;
    }
    (seen == 31).then_some(fields)
}

/// A random string of ASCII letters and digits from the system's CSPRNG.
pub(crate) fn alphanumeric_nonce(len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    // Bytes at or above the largest multiple of 62 are dropped so that every
    // character is equally likely.
    const LIMIT: u8 = (256 / ALPHABET.len() * ALPHABET.len()) as u8;
    let rng = SystemRandom::new();
    let mut nonce = String::with_capacity(len);
    let mut buffer = [0u8; 64];
    while nonce.len() < len {
        rng.fill(&mut buffer)
            .expect("the operating system's random source failed");
        for &byte in buffer.iter().filter(|&&byte| byte < LIMIT) {
            if nonce.len() == len {
                break;
            }
            nonce.push(char::from(ALPHABET[usize::from(byte) % ALPHABET.len()]));
        }
    }
    nonce
}

/// Whether a nonce is what the official helper sends: non-empty, letters and
/// digits only, and of a sane length.
pub(crate) fn is_acceptable_nonce(nonce: &str) -> bool {
    (1..=64).contains(&nonce.len()) && nonce.bytes().all(|byte| byte.is_ascii_alphanumeric())
}

/// Decodes a PKCS#8 PEM private key to DER.
fn pkcs8_der(pem_text: &str) -> Result<Vec<u8>, KeyError> {
    let block = pem::parse(pem_text.trim())
        .map_err(|_| KeyError("is not a PEM block (expected -----BEGIN PRIVATE KEY-----)"))?;
    if block.tag() != "PRIVATE KEY" {
        return Err(KeyError(
            "is not a PKCS#8 private key (expected -----BEGIN PRIVATE KEY-----; convert PKCS#1 with `openssl pkcs8 -topk8 -nocrypt`)",
        ));
    }
    Ok(block.into_contents())
}

/// Signs with SHA256withRSA (PKCS#1 v1.5).
pub(crate) struct RsaSigner {
    key_pair: RsaKeyPair,
}

impl RsaSigner {
    pub(crate) fn from_pkcs8_pem(pem_text: &SecretString) -> Result<RsaSigner, KeyError> {
        let der = pkcs8_der(pem_text.expose_secret())?;
        let key_pair = RsaKeyPair::from_pkcs8(&der)
            .map_err(|_| KeyError("is not a valid RSA private key of 2048 bits or more"))?;
        Ok(RsaSigner { key_pair })
    }

    /// The Base64 signature of `message`.
    pub(crate) fn sign(&self, message: &[u8]) -> String {
        let mut signature = vec![0u8; self.key_pair.public().modulus_len()];
        self.key_pair
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                message,
                &mut signature,
            )
            .expect("RSA signing fails only when the random source does");
        BASE64.encode(signature)
    }
}

impl std::fmt::Debug for RsaSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RsaSigner(..)")
    }
}

/// Verifies SHA256withRSA (PKCS#1 v1.5) signatures.
#[derive(Clone)]
pub(crate) struct RsaVerifier {
    components: RsaPublicKeyComponents<Vec<u8>>,
}

impl RsaVerifier {
    /// From an SPKI PEM (`-----BEGIN PUBLIC KEY-----`). ring wants the bare
    /// modulus and exponent, which the `rsa` crate's SPKI decoder gives.
    pub(crate) fn from_spki_pem(pem_text: &str) -> Result<RsaVerifier, KeyError> {
        let key = rsa_public_key(pem_text)?;
        if key.size() < 256 {
            return Err(KeyError("is an RSA key shorter than 2048 bits"));
        }
        Ok(RsaVerifier {
            components: RsaPublicKeyComponents {
                n: key.n().to_bytes_be(),
                e: key.e().to_bytes_be(),
            },
        })
    }

    /// Whether `signature_base64` is a valid signature of `message`. Anything
    /// that is not Base64 (a `WECHATPAY/SIGNTEST/` probe, say) simply fails.
    pub(crate) fn verify(&self, message: &[u8], signature_base64: &str) -> bool {
        let Ok(signature) = BASE64.decode(signature_base64.trim()) else {
            return false;
        };
        self.components
            .verify(&RSA_PKCS1_2048_8192_SHA256, message, &signature)
            .is_ok()
    }
}

impl std::fmt::Debug for RsaVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RsaVerifier(..)")
    }
}

/// Decodes an SPKI PEM public key for RSA-OAEP.
pub(crate) fn rsa_public_key(pem_text: &str) -> Result<rsa::RsaPublicKey, KeyError> {
    rsa::RsaPublicKey::from_public_key_pem(pem_text.trim())
        .map_err(|_| KeyError("is not an RSA public key in SPKI PEM (-----BEGIN PUBLIC KEY-----)"))
}

/// Decodes a PKCS#8 PEM private key for RSA-OAEP decryption (sandbox only).
pub(crate) fn rsa_private_key(pem_text: &SecretString) -> Result<rsa::RsaPrivateKey, KeyError> {
    rsa::RsaPrivateKey::from_pkcs8_pem(pem_text.expose_secret().trim())
        .map_err(|_| KeyError("is not an RSA private key in PKCS#8 PEM"))
}

/// Adapts ring's `SystemRandom` to the `rand_core` traits the `rsa` crate
/// takes, so every random byte in this crate comes from one source.
struct RingRng(SystemRandom);

impl rsa::rand_core::RngCore for RingRng {
    fn next_u32(&mut self) -> u32 {
        let mut bytes = [0u8; 4];
        self.fill_bytes(&mut bytes);
        u32::from_le_bytes(bytes)
    }

    fn next_u64(&mut self) -> u64 {
        let mut bytes = [0u8; 8];
        self.fill_bytes(&mut bytes);
        u64::from_le_bytes(bytes)
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        self.0
            .fill(dest)
            .expect("the operating system's random source failed");
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rsa::rand_core::Error> {
        self.0.fill(dest).map_err(|_| {
            let code = std::num::NonZeroU32::new(rsa::rand_core::Error::CUSTOM_START)
                .expect("CUSTOM_START is not zero");
            rsa::rand_core::Error::from(code)
        })
    }
}

impl rsa::rand_core::CryptoRng for RingRng {}

/// Encrypts a sensitive field (`user_name`) with RSA-OAEP-SHA1, as WeChat
/// requires, and Base64-encodes it.
pub(crate) fn encrypt_sensitive(
    key: &rsa::RsaPublicKey,
    plaintext: &[u8],
) -> Result<String, KeyError> {
    let ciphertext = key
        .encrypt(
            &mut RingRng(SystemRandom::new()),
            rsa::Oaep::new::<sha1::Sha1>(),
            plaintext,
        )
        .map_err(|_| KeyError("field is too long for RSA-OAEP with this key"))?;
    Ok(BASE64.encode(ciphertext))
}

/// Decrypts a Base64 RSA-OAEP-SHA1 field (sandbox only).
pub(crate) fn decrypt_sensitive(
    key: &rsa::RsaPrivateKey,
    ciphertext_base64: &str,
) -> Option<Vec<u8>> {
    let ciphertext = BASE64.decode(ciphertext_base64).ok()?;
    key.decrypt(rsa::Oaep::new::<sha1::Sha1>(), &ciphertext)
        .ok()
}

/// The APIv3 key as an AES-256-GCM key for callback resources.
pub(crate) struct ResourceKey {
    key: LessSafeKey,
}

impl ResourceKey {
    /// The APIv3 key is 32 ASCII characters, used as 32 raw key bytes.
    pub(crate) fn from_api_v3_key(api_v3_key: &SecretString) -> Result<ResourceKey, KeyError> {
        let bytes = api_v3_key.expose_secret().as_bytes();
        let unbound = UnboundKey::new(&AES_256_GCM, bytes)
            .map_err(|_| KeyError("must be exactly 32 bytes"))?;
        Ok(ResourceKey {
            key: LessSafeKey::new(unbound),
        })
    }

    /// Encrypts and Base64-encodes `plaintext` with the 16-byte tag appended.
    /// The nonce must be 12 bytes, and never reused with this key.
    pub(crate) fn seal(
        &self,
        nonce: &str,
        associated_data: &str,
        plaintext: &[u8],
    ) -> Option<String> {
        let nonce = Nonce::try_assume_unique_for_key(nonce.as_bytes()).ok()?;
        let mut in_out = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(nonce, Aad::from(associated_data.as_bytes()), &mut in_out)
            .ok()?;
        Some(BASE64.encode(in_out))
    }

    /// Decrypts a Base64 ciphertext with its tag appended. An empty
    /// `associated_data` is valid: the transfer callbacks send `""`.
    pub(crate) fn open(
        &self,
        nonce: &str,
        associated_data: &str,
        ciphertext_base64: &str,
    ) -> Option<Vec<u8>> {
        let nonce = Nonce::try_assume_unique_for_key(nonce.as_bytes()).ok()?;
        let mut in_out = BASE64.decode(ciphertext_base64).ok()?;
        let plaintext_len = self
            .key
            .open_in_place(nonce, Aad::from(associated_data.as_bytes()), &mut in_out)
            .ok()?
            .len();
        in_out.truncate(plaintext_len);
        Some(in_out)
    }
}

impl std::fmt::Debug for ResourceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ResourceKey(..)")
    }
}

/// The signature headers of a signed answer or callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SignatureHeaders {
    pub(crate) timestamp: String,
    pub(crate) nonce: String,
    pub(crate) signature: String,
    pub(crate) serial: String,
}

/// Signs an answer or callback body as WeChat does.
pub(crate) fn sign_answer(
    signer: &RsaSigner,
    serial: &str,
    timestamp: i64,
    body: &[u8],
) -> SignatureHeaders {
    let timestamp = timestamp.to_string();
    let nonce = alphanumeric_nonce(REQUEST_NONCE_LEN);
    let signature = signer.sign(&answer_message(&timestamp, &nonce, body));
    SignatureHeaders {
        timestamp,
        nonce,
        signature,
        serial: serial.to_owned(),
    }
}

/// Test keys shared by the unit tests of this module and its neighbours.
#[cfg(test)]
pub(crate) mod test_keys {
    use secrecy::SecretString;

    pub(crate) fn merchant_private() -> SecretString {
        SecretString::from(include_str!("../../sandbox-keys/merchant_private_key.pem"))
    }
    pub(crate) const MERCHANT_PUBLIC: &str =
        include_str!("../../sandbox-keys/merchant_public_key.pem");
    pub(crate) fn platform_private() -> SecretString {
        SecretString::from(include_str!("../../sandbox-keys/platform_private_key.pem"))
    }
    pub(crate) const PLATFORM_PUBLIC: &str =
        include_str!("../../sandbox-keys/platform_public_key.pem");
    pub(crate) fn api_v3_key() -> SecretString {
        SecretString::from(include_str!("../../sandbox-keys/api_v3_key.txt"))
    }
}

#[cfg(test)]
mod tests {
    use super::test_keys::*;
    use super::*;

    #[test]
    fn the_request_message_is_five_lines_with_a_trailing_newline_even_for_an_empty_body() {
        let message = request_message(
            "GET",
            "/v3/fund-app/mch-transfer/transfer-bills/out-bill-no/wd01",
            "1554208460",
            "593BEC0C930BF1AFEB40B4A08C8FB242",
            b"",
        );
        assert_eq!(
            message,
            b"GET\n/v3/fund-app/mch-transfer/transfer-bills/out-bill-no/wd01\n1554208460\n593BEC0C930BF1AFEB40B4A08C8FB242\n\n"
        );
        let post = request_message("POST", "/v3/x", "1", "n", br#"{"a":1}"#);
        assert_eq!(post, b"POST\n/v3/x\n1\nn\n{\"a\":1}\n");
    }

    #[test]
    fn the_answer_message_is_three_lines() {
        assert_eq!(answer_message("1", "n", b"{}"), b"1\nn\n{}\n");
        assert_eq!(answer_message("1", "n", b""), b"1\nn\n\n");
    }

    #[test]
    fn the_authorization_header_has_the_v3_shape_and_parses_back() {
        let header = authorization("1900007291", "NONCE123", "c2ln", "1554208460", "SERIAL9");
        assert_eq!(
            header,
            r#"WECHATPAY2-SHA256-RSA2048 mchid="1900007291",nonce_str="NONCE123",signature="c2ln",timestamp="1554208460",serial_no="SERIAL9""#
        );
        let fields = parse_authorization(&header).unwrap();
        assert_eq!(
            fields,
            AuthorizationFields {
                mchid: "1900007291",
                nonce_str: "NONCE123",
                signature: "c2ln",
                timestamp: "1554208460",
                serial_no: "SERIAL9",
            }
        );
        // Any order is fine; a missing, repeated or unknown field is not.
        assert!(parse_authorization(r#"WECHATPAY2-SHA256-RSA2048 serial_no="S",timestamp="1",signature="s",nonce_str="n",mchid="m""#).is_some());
        assert!(
            parse_authorization(
                r#"WECHATPAY2-SHA256-RSA2048 mchid="m",nonce_str="n",signature="s",timestamp="1""#
            )
            .is_none()
        );
        assert!(parse_authorization(r#"WECHATPAY2-SHA256-RSA2048 mchid="m",mchid="m",nonce_str="n",signature="s",timestamp="1""#).is_none());
        assert!(parse_authorization(r#"Bearer mchid="m""#).is_none());
    }

    #[test]
    fn a_signature_verifies_with_the_matching_public_key_only() {
        let signer = RsaSigner::from_pkcs8_pem(&merchant_private()).unwrap();
        let message = request_message("POST", "/v3/x", "1", "n", b"{}");
        let signature = signer.sign(&message);
        let merchant = RsaVerifier::from_spki_pem(MERCHANT_PUBLIC).unwrap();
        let platform = RsaVerifier::from_spki_pem(PLATFORM_PUBLIC).unwrap();
        assert!(merchant.verify(&message, &signature));
        assert!(!platform.verify(&message, &signature));
        assert!(!merchant.verify(b"other", &signature));
        assert!(!merchant.verify(&message, "WECHATPAY/SIGNTEST/abc"));
    }

    #[test]
    fn keys_of_the_wrong_kind_are_refused_without_quoting_them() {
        let error = RsaSigner::from_pkcs8_pem(&SecretString::from(MERCHANT_PUBLIC)).unwrap_err();
        assert!(!error.to_string().contains("MII"));
        assert!(RsaVerifier::from_spki_pem("garbage").is_err());
        assert!(ResourceKey::from_api_v3_key(&SecretString::from("short")).is_err());
    }

    #[test]
    fn user_name_round_trips_through_rsa_oaep_sha1() {
        let public = rsa_public_key(PLATFORM_PUBLIC).unwrap();
        let private = rsa_private_key(&platform_private()).unwrap();
        let ciphertext = encrypt_sensitive(&public, "张三".as_bytes()).unwrap();
        assert_eq!(
            decrypt_sensitive(&private, &ciphertext).unwrap(),
            "张三".as_bytes()
        );
        // OAEP is randomised: the same name never gives the same ciphertext.
        assert_ne!(
            ciphertext,
            encrypt_sensitive(&public, "张三".as_bytes()).unwrap()
        );
    }

    #[test]
    fn a_callback_resource_round_trips_through_aes_gcm_with_or_without_associated_data() {
        let key = ResourceKey::from_api_v3_key(&api_v3_key()).unwrap();
        for aad in ["mch_payment", ""] {
            let sealed = key
                .seal("0123456789ab", aad, b"{\"state\":\"SUCCESS\"}")
                .unwrap();
            assert_eq!(
                key.open("0123456789ab", aad, &sealed).unwrap(),
                b"{\"state\":\"SUCCESS\"}"
            );
            assert!(key.open("0123456789ac", aad, &sealed).is_none());
            assert!(key.open("0123456789ab", "other", &sealed).is_none());
        }
        assert!(key.seal("short", "", b"x").is_none());
    }

    #[test]
    fn nonces_are_alphanumeric_and_of_the_asked_length() {
        let nonce = alphanumeric_nonce(REQUEST_NONCE_LEN);
        assert_eq!(nonce.len(), REQUEST_NONCE_LEN);
        assert!(is_acceptable_nonce(&nonce));
        assert_ne!(nonce, alphanumeric_nonce(REQUEST_NONCE_LEN));
        assert!(!is_acceptable_nonce(""));
        assert!(!is_acceptable_nonce("abc-def"));
    }
}
