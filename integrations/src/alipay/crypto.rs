//! The cryptography of the Alipay OpenAPI v1 gateway (`gateway.do`): the
//! sorted `k=v&…` content that RSA2 signs, SHA256withRSA signing with the app
//! private key and verification with Alipay's key (ring), slicing the signed
//! `*_response` node out of an answer exactly as received, and the
//! certificate serial numbers (`app_cert_sn`, `alipay_root_cert_sn`,
//! `alipay_cert_sn`) of certificate mode (`x509-cert`, `md-5`).
//!
//! Nothing here logs, and no error carries key material.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use md5::{Digest as _, Md5};
use ring::rand::SystemRandom;
use ring::signature::{
    RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_SHA256, RsaKeyPair, UnparsedPublicKey,
};
use rsa::pkcs1::DecodeRsaPublicKey as _;
use rsa::traits::PublicKeyParts as _;
use secrecy::{ExposeSecret, SecretString};
use x509_cert::Certificate;
use x509_cert::attr::AttributeTypeAndValue;
use x509_cert::der::asn1::ObjectIdentifier;
use x509_cert::der::{Decode as _, Encode as _, Tag, Tagged as _};
use x509_cert::name::Name;
use x509_cert::spki::SubjectPublicKeyInfoRef;

/// `rsaEncryption`: the only key algorithm RSA2 verifies with.
const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
/// The PKCS#1 arc (`pkcs-1`): sha1WithRSAEncryption is `.5`,
/// sha256WithRSAEncryption `.11`. Root certificates signed with an algorithm
/// under it make up `alipay_root_cert_sn`.
const PKCS1_ARC: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1");

/// Why a key, certificate or answer was refused. Static text only: a parser's
/// own message could quote the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct KeyError(pub(crate) &'static str);

/// The content an RSA2 signature covers: every parameter except those in
/// `excluded`, empty values dropped, keys in ASCII (byte) order, joined as
/// `k1=v1&k2=v2` with raw values, never URL-encoded. A repeated key keeps the
/// last value, as a map-based SDK would.
fn sign_content<'a>(
    params: impl IntoIterator<Item = (&'a str, &'a str)>,
    excluded: &[&str],
) -> String {
    let sorted: BTreeMap<&str, &str> = params
        .into_iter()
        .filter(|(key, value)| !value.is_empty() && !excluded.contains(key))
        .collect();
    let mut content = String::new();
    for (key, value) in sorted {
        if !content.is_empty() {
            content.push('&');
        }
        content.push_str(key);
        content.push('=');
        content.push_str(value);
    }
    content
}

/// What a request's `sign` covers: everything but `sign`; `sign_type` *is*
/// signed on requests (EasySDK `getSignContent` keeps it).
pub(crate) fn request_sign_content<'a>(
    params: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> String {
    sign_content(params, &["sign"])
}

/// What a notification's `sign` covers: everything but `sign` and
/// `sign_type` (EasySDK `Signer::verifyParams` removes both).
pub(crate) fn notify_sign_content<'a>(
    params: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> String {
    sign_content(params, &["sign", "sign_type"])
}

/// Signs with SHA256withRSA (PKCS#1 v1.5), as `sign_type=RSA2` names it.
pub(crate) struct AppSigner {
    key_pair: RsaKeyPair,
}

impl AppSigner {
    /// From the app private key as Alipay's key tool hands it out: PEM
    /// `RSA PRIVATE KEY` (PKCS#1), PEM `PRIVATE KEY` (PKCS#8), or the bare
    /// Base64 of either.
    pub(crate) fn from_pem(key: &SecretString) -> Result<AppSigner, KeyError> {
        let text = key.expose_secret().trim();
        const INVALID: KeyError = KeyError("is not a valid RSA private key of 2048 bits or more");
        let key_pair = if text.starts_with("-----") {
            let block = pem::parse(text).map_err(|_| KeyError("is not a PEM block"))?;
            match block.tag() {
                "RSA PRIVATE KEY" => RsaKeyPair::from_der(block.contents()),
                "PRIVATE KEY" => RsaKeyPair::from_pkcs8(block.contents()),
                _ => {
                    return Err(KeyError(
                        "is not an RSA private key (expected RSA PRIVATE KEY or PRIVATE KEY)",
                    ));
                }
            }
            .map_err(|_| INVALID)?
        } else {
            let der = BASE64
                .decode(text)
                .map_err(|_| KeyError("is neither PEM nor Base64"))?;
            RsaKeyPair::from_pkcs8(&der)
                .or_else(|_| RsaKeyPair::from_der(&der))
                .map_err(|_| INVALID)?
        };
        Ok(AppSigner { key_pair })
    }

    /// The Base64 signature of `content`.
    pub(crate) fn sign(&self, content: &str) -> String {
        let mut signature = vec![0u8; self.key_pair.public().modulus_len()];
        self.key_pair
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                content.as_bytes(),
                &mut signature,
            )
            .expect("RSA signing fails only when the random source does");
        BASE64.encode(signature)
    }
}

impl std::fmt::Debug for AppSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AppSigner(..)")
    }
}

/// Verifies SHA256withRSA signatures with one RSA public key of 2048 to 8192
/// bits.
#[derive(Clone)]
pub(crate) struct AlipayVerifier {
    /// The PKCS#1 `RSAPublicKey` DER, as ring takes it.
    rsa_public_key: Vec<u8>,
}

impl AlipayVerifier {
    /// From the Alipay public key of public-key mode: SPKI PEM
    /// (`PUBLIC KEY`) or the bare Base64 the open platform shows.
    pub(crate) fn from_public_key(text: &str) -> Result<AlipayVerifier, KeyError> {
        let text = text.trim();
        let der = if text.starts_with("-----") {
            let block = pem::parse(text).map_err(|_| KeyError("is not a PEM block"))?;
            if block.tag() != "PUBLIC KEY" {
                return Err(KeyError(
                    "is not an SPKI public key (-----BEGIN PUBLIC KEY-----)",
                ));
            }
            block.into_contents()
        } else {
            BASE64
                .decode(text)
                .map_err(|_| KeyError("is neither PEM nor Base64"))?
        };
        let spki = SubjectPublicKeyInfoRef::from_der(&der)
            .map_err(|_| KeyError("is not an SPKI public key"))?;
        Self::from_spki(spki.algorithm.oid, spki.subject_public_key.raw_bytes())
    }

    /// From the key a certificate holds.
    fn from_certificate(certificate: &Certificate) -> Result<AlipayVerifier, KeyError> {
        let spki = &certificate.tbs_certificate.subject_public_key_info;
        Self::from_spki(spki.algorithm.oid, spki.subject_public_key.raw_bytes())
    }

    fn from_spki(algorithm: ObjectIdentifier, key: &[u8]) -> Result<AlipayVerifier, KeyError> {
        if algorithm != RSA_ENCRYPTION {
            return Err(KeyError("is not an RSA key"));
        }
        // ring checks the modulus size (2048–8192 bits) on every verify;
        // checking it once here makes a short key fail the start instead.
        let parsed = rsa::RsaPublicKey::from_pkcs1_der(key)
            .map_err(|_| KeyError("is not a valid RSA public key"))?;
        if !(256..=1024).contains(&parsed.size()) {
            return Err(KeyError("is not an RSA key of 2048 to 8192 bits"));
        }
        Ok(AlipayVerifier {
            rsa_public_key: key.to_vec(),
        })
    }

    /// Whether `signature_base64` is a valid signature of `content`.
    pub(crate) fn verify(&self, content: &[u8], signature_base64: &str) -> bool {
        let Ok(signature) = BASE64.decode(signature_base64.trim()) else {
            return false;
        };
        UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &self.rsa_public_key)
            .verify(content, &signature)
            .is_ok()
    }
}

impl std::fmt::Debug for AlipayVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AlipayVerifier(..)")
    }
}

/// Why the signed node could not be sliced out of an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ExtractError {
    #[error("the answer is not a JSON object")]
    NotAnObject,
    #[error("the answer has no response node")]
    Missing,
    #[error("the answer names the response node twice")]
    Repeated,
}

/// The exact text of the top-level member `node` of a JSON object, as
/// received: the bytes the signature covers. Re-serialising would change
/// spacing, escapes or key order and break verification (EasySDK
/// `SignContentExtractor` slices the text the same way).
///
/// Only top-level members count, so a nested object or a string that merely
/// contains `"…_response"` is never taken for the node. Strings are skipped
/// with their escapes, so braces and quotes inside them do not confuse the
/// nesting count. A repeated node is refused: which one was signed would be a
/// guess.
pub(crate) fn signed_node<'a>(body: &'a str, node: &str) -> Result<&'a str, ExtractError> {
    let bytes = body.as_bytes();
    let mut at = skip_whitespace(bytes, 0);
    if bytes.get(at) != Some(&b'{') {
        return Err(ExtractError::NotAnObject);
    }
    at = skip_whitespace(bytes, at + 1);
    let mut found = None;
    if bytes.get(at) == Some(&b'}') {
        return Err(ExtractError::Missing);
    }
    loop {
        let key_start = at;
        let key_end = skip_string(bytes, key_start).ok_or(ExtractError::NotAnObject)?;
        // Keys are compared raw: Alipay never escapes its node names.
        let key = &body[key_start + 1..key_end - 1];
        at = skip_whitespace(bytes, key_end);
        if bytes.get(at) != Some(&b':') {
            return Err(ExtractError::NotAnObject);
        }
        let value_start = skip_whitespace(bytes, at + 1);
        let value_end = skip_value(bytes, value_start).ok_or(ExtractError::NotAnObject)?;
        if key == node {
            if found.is_some() {
                return Err(ExtractError::Repeated);
            }
            found = Some(&body[value_start..value_end]);
        }
        at = skip_whitespace(bytes, value_end);
        match bytes.get(at) {
            Some(b',') => at = skip_whitespace(bytes, at + 1),
            Some(b'}') => break,
            _ => return Err(ExtractError::NotAnObject),
        }
    }
    if skip_whitespace(bytes, at + 1) != bytes.len() {
        return Err(ExtractError::NotAnObject);
    }
    found.ok_or(ExtractError::Missing)
}

fn skip_whitespace(bytes: &[u8], mut at: usize) -> usize {
    while matches!(bytes.get(at), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        at += 1;
    }
    at
}

/// The index just past the string starting at `at` (which must be `"`).
fn skip_string(bytes: &[u8], at: usize) -> Option<usize> {
    if bytes.get(at) != Some(&b'"') {
        return None;
    }
    let mut index = at + 1;
    loop {
        match bytes.get(index)? {
            b'"' => return Some(index + 1),
            // Whatever follows a backslash is part of the escape: `\"` and
            // `\\` in particular. `\uXXXX` needs no special case, as its hex
            // digits are neither quotes nor backslashes.
            b'\\' => index += 2,
            _ => index += 1,
        }
    }
}

/// The index just past the JSON value starting at `at`. Objects and arrays are
/// matched by depth with strings skipped whole; scalars run to the next
/// delimiter. Bounded by the body's length: every step moves forward.
fn skip_value(bytes: &[u8], at: usize) -> Option<usize> {
    match bytes.get(at)? {
        b'"' => skip_string(bytes, at),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut index = at;
            loop {
                match bytes.get(index)? {
                    b'"' => {
                        index = skip_string(bytes, index)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(index + 1);
                        }
                    }
                    _ => {}
                }
                index += 1;
            }
        }
        _ => {
            let end = bytes[at..]
                .iter()
                .position(|byte| matches!(byte, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'))
                .map_or(bytes.len(), |offset| at + offset);
            (end > at).then_some(end)
        }
    }
}

/// Every certificate in a PEM text, in order. Anything that is not a
/// `CERTIFICATE` block, or does not parse, refuses the whole text: a bundle
/// read in part would give a wrong root SN.
pub(crate) fn certificates(pem_text: &str) -> Result<Vec<Certificate>, KeyError> {
    let certificates = crate::tls::pem_certificates(pem_text).map_err(KeyError)?;
    Ok(certificates
        .into_iter()
        .map(|(certificate, _)| certificate)
        .collect())
}

/// A certificate's Alipay SN: the md5 (32 lowercase hex digits) of the issuer
/// DN followed by the serial number in decimal.
///
/// Confirmed against the official SDKs: alipay-sdk-java-all
/// `AntCertificationUtil.getCertSN` hashes
/// `getIssuerX500Principal().getName() + getSerialNumber()`, that is the
/// RFC 2253 issuer (attributes last to first, `k=v` joined by `,`, standard
/// short names) and the serial as a decimal, with the digest padded to 32 hex
/// digits (`fillMD5`; fixed-width hex already is). alipay-sdk-nodejs-all
/// `antcertutil.getCertSN` builds the same text by hand (`reduceRight` over
/// the issuer's attributes, `shortName=value` joined by `,`, the hex serial
/// converted to decimal). The two differ only on values RFC 2253 escapes
/// (`,+"\<>;`), which Alipay's issuer names do not contain; we escape, as
/// Java does.
pub(crate) fn cert_sn(certificate: &Certificate) -> String {
    let serial = rsa::BigUint::from_bytes_be(certificate.tbs_certificate.serial_number.as_bytes());
    let text = format!(
        "{}{}",
        issuer_dn_rfc2253(&certificate.tbs_certificate.issuer),
        serial
    );
    Md5::digest(text.as_bytes())
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// `alipay_root_cert_sn`: the SNs of the bundle's RSA-signed certificates,
/// joined by `_`, in bundle order. Alipay's root bundle also holds an ECC and
/// an SM2 root, which are skipped.
///
/// Which certificates count: the reference says those signed with
/// sha1WithRSA or sha256WithRSA. The official SDKs (Java `getRootCertSN`,
/// Node `getRootCertSN`, the .NET ports) all keep every signature OID that
/// starts with `1.2.840.113549.1.1`, the whole PKCS#1 family. The two agree
/// on Alipay's bundle, whose RSA roots are signed with exactly those two; we
/// follow the SDKs, so a future sha384WithRSA root would give the SN the
/// gateway expects.
pub(crate) fn root_cert_sn(bundle: &[Certificate]) -> String {
    bundle
        .iter()
        .filter(|certificate| certificate.signature_algorithm.oid.parent() == Some(PKCS1_ARC))
        .map(cert_sn)
        .collect::<Vec<_>>()
        .join("_")
}

/// The verifier for the key a certificate holds, and that certificate's SN.
pub(crate) fn certificate_verifier(
    certificate: &Certificate,
) -> Result<(String, AlipayVerifier), KeyError> {
    Ok((
        cert_sn(certificate),
        AlipayVerifier::from_certificate(certificate)?,
    ))
}

/// A DN as Java's `X500Principal.getName()` (RFC 2253) writes it: RDNs last
/// to first, joined by `,`; attributes of one RDN joined by `+`; the RFC 2253
/// short names where there is one, otherwise the dotted OID with the value as
/// `#` and the hex of its DER, as are values that are not strings.
pub(crate) fn issuer_dn_rfc2253(name: &Name) -> String {
    name.0
        .iter()
        .rev()
        .map(|rdn| {
            rdn.0
                .iter()
                .map(attribute_rfc2253)
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// One `key=value` of an RDN.
fn attribute_rfc2253(attribute: &AttributeTypeAndValue) -> String {
    let key = short_name(&attribute.oid);
    if let (Some(key), Some(value)) = (key, string_value(&attribute.value)) {
        return format!("{key}={}", escape_rfc2253(&value));
    }
    // A value that parsed re-encodes; an empty `#` would still name it.
    let der = attribute.value.to_der().unwrap_or_default();
    let hex: String = der.iter().map(|byte| format!("{byte:02x}")).collect();
    match key {
        Some(key) => format!("{key}=#{hex}"),
        None => format!("{}=#{hex}", attribute.oid),
    }
}

/// The keywords RFC 2253 (and so Java) writes by name.
fn short_name(oid: &ObjectIdentifier) -> Option<&'static str> {
    Some(match oid.to_string().as_str() {
        "2.5.4.3" => "CN",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.9" => "STREET",
        "0.9.2342.19200300.100.1.25" => "DC",
        "0.9.2342.19200300.100.1.1" => "UID",
        _ => return None,
    })
}

/// The text of a directory string; `None` for any other type.
fn string_value(value: &x509_cert::der::Any) -> Option<String> {
    let bytes = value.value();
    match value.tag() {
        Tag::Utf8String | Tag::PrintableString | Tag::Ia5String | Tag::VisibleString => {
            String::from_utf8(bytes.to_vec()).ok()
        }
        // T.61 in practice holds Latin-1.
        Tag::TeletexString => Some(bytes.iter().map(|&byte| char::from(byte)).collect()),
        Tag::BmpString => {
            let units: Vec<u16> = bytes
                .chunks_exact(2)
                .map(|pair| u16::from_be_bytes([pair[0], pair[1]]))
                .collect();
            String::from_utf16(&units).ok()
        }
        _ => None,
    }
}

/// RFC 2253 section 2.4: `,+"\<>;` escaped everywhere, `#` or a space first,
/// and a space last.
fn escape_rfc2253(value: &str) -> String {
    let count = value.chars().count();
    let mut escaped = String::with_capacity(value.len());
    for (index, character) in value.chars().enumerate() {
        let needs_escape = matches!(character, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (index == 0 && matches!(character, '#' | ' '))
            || (index + 1 == count && character == ' ');
        if needs_escape {
            escaped.push('\\');
        }
        escaped.push(character);
    }
    escaped
}

/// Test keys and certificates, shared by the unit tests of the Alipay
/// modules. Test-only, generated once with openssl (see the README beside
/// them).
#[cfg(test)]
pub(crate) mod test_keys {
    use secrecy::SecretString;

    pub(crate) fn app_private_pkcs1() -> SecretString {
        SecretString::from(include_str!(
            "../../sandbox-keys/alipay/app_private_key_pkcs1.pem"
        ))
    }
    pub(crate) fn app_private() -> SecretString {
        SecretString::from(include_str!(
            "../../sandbox-keys/alipay/app_private_key.pem"
        ))
    }
    pub(crate) const APP_PUBLIC: &str =
        include_str!("../../sandbox-keys/alipay/app_public_key.pem");
    pub(crate) fn alipay_private() -> SecretString {
        SecretString::from(include_str!(
            "../../sandbox-keys/alipay/alipay_private_key.pem"
        ))
    }
    pub(crate) const ALIPAY_PUBLIC: &str =
        include_str!("../../sandbox-keys/alipay/alipay_public_key.pem");
    pub(crate) const APP_CERT: &str = include_str!("../../sandbox-keys/alipay/app_public_cert.crt");
    pub(crate) const ALIPAY_CERT: &str =
        include_str!("../../sandbox-keys/alipay/alipay_public_cert.crt");
    pub(crate) const ROOT_BUNDLE: &str =
        include_str!("../../sandbox-keys/alipay/alipay_root_cert.crt");
}

#[cfg(test)]
mod tests {
    use super::test_keys::*;
    use super::*;

    /// `printf 'a=1&b=2&sign_type=RSA2' | openssl dgst -sha256 -sign
    /// app_private_key.pem | base64 -w0`, computed once. PKCS#1 v1.5 is
    /// deterministic, so ring must produce the very same bytes.
    const OPENSSL_SIGNATURE: &str = "nqGxdkb2BIpPK5n/CbnDbyTeMhx+ZhQ3VbCyWW5ZupsjyRWtOpM6bnJZRh8orHUzH3UIrB8nJNvYRTN4ofxSuMaaTDNGQt+sg8SXCBeg/qLz91LYT/9OaYr3sBajGKxAd3Gn+di1NmArtGPfZbhK/y/IWXsHWhAxOceBeYS9K7oy1cPvB6v7zKi6JovQYZR+azX47pLr4xdUh36GOCeYVP2YV3iCzE90x9hWIYWJe8zayQkoqW1WTmck9ucCaUGuWqEHgAlYfHwbHashHP5spt1Hk793HFU+hZTm9DJ2CLMupJw4o9/9ufFLZcUNyIv22TQlQxK/zkN46iQ9ZTc+fg==";

    #[test]
    fn request_content_is_sorted_raw_without_sign_or_empty_values_and_keeps_sign_type() {
        let params = [
            ("sign", "xyz"),
            ("method", "alipay.fund.trans.uni.transfer"),
            ("biz_content", r#"{"a":"x y&z"}"#),
            ("app_auth_token", ""),
            ("sign_type", "RSA2"),
            ("app_id", "2021"),
            ("Zeta", "upper case sorts first"),
        ];
        assert_eq!(
            request_sign_content(params),
            r#"Zeta=upper case sorts first&app_id=2021&biz_content={"a":"x y&z"}&method=alipay.fund.trans.uni.transfer&sign_type=RSA2"#
        );
    }

    #[test]
    fn notification_content_leaves_out_sign_and_sign_type() {
        let params = [
            ("sign_type", "RSA2"),
            ("sign", "xyz"),
            ("notify_id", "n1"),
            ("charset", "utf-8"),
            ("version", ""),
        ];
        assert_eq!(notify_sign_content(params), "charset=utf-8&notify_id=n1");
    }

    #[test]
    fn ring_signs_exactly_as_openssl_does_with_a_pkcs1_or_pkcs8_key() {
        for key in [app_private_pkcs1(), app_private()] {
            let signer = AppSigner::from_pem(&key).unwrap();
            assert_eq!(signer.sign("a=1&b=2&sign_type=RSA2"), OPENSSL_SIGNATURE);
        }
        let verifier = AlipayVerifier::from_public_key(APP_PUBLIC).unwrap();
        assert!(verifier.verify(b"a=1&b=2&sign_type=RSA2", OPENSSL_SIGNATURE));
    }

    #[test]
    fn a_signature_verifies_with_the_matching_public_key_only() {
        let signer = AppSigner::from_pem(&alipay_private()).unwrap();
        let signature = signer.sign("content");
        let alipay = AlipayVerifier::from_public_key(ALIPAY_PUBLIC).unwrap();
        let app = AlipayVerifier::from_public_key(APP_PUBLIC).unwrap();
        assert!(alipay.verify(b"content", &signature));
        assert!(!app.verify(b"content", &signature));
        assert!(!alipay.verify(b"content2", &signature));
        assert!(!alipay.verify(b"content", "not base64!"));
        // The bare Base64 the open platform shows works as well as PEM.
        let bare: String = ALIPAY_PUBLIC
            .lines()
            .filter(|line| !line.starts_with("-----"))
            .collect();
        assert!(
            AlipayVerifier::from_public_key(&bare)
                .unwrap()
                .verify(b"content", &signature)
        );
    }

    #[test]
    fn keys_of_the_wrong_kind_are_refused_without_quoting_them() {
        let error = AppSigner::from_pem(&SecretString::from(ALIPAY_PUBLIC)).unwrap_err();
        assert!(!error.to_string().contains("MII"));
        assert!(AppSigner::from_pem(&SecretString::from("garbage")).is_err());
        assert!(AlipayVerifier::from_public_key("garbage!").is_err());
        assert!(AlipayVerifier::from_public_key(APP_CERT).is_err());
    }

    #[test]
    fn the_signed_node_is_sliced_exactly_as_received() {
        let node = "alipay_fund_trans_uni_transfer_response";
        let body = r#"{"alipay_fund_trans_uni_transfer_response":{"code":"10000","msg":"Success","out_biz_no":"wd01"},"sign":"abc"}"#;
        assert_eq!(
            signed_node(body, node).unwrap(),
            r#"{"code":"10000","msg":"Success","out_biz_no":"wd01"}"#
        );
        // Spacing, escapes and key order are kept byte for byte; the sign may
        // come first; nested objects and arrays are matched by depth.
        let body = "{ \"sign\" : \"abc\",\n \"alipay_fund_trans_uni_transfer_response\" :  { \"b\":\"\\u5f20\\/\", \"a\": {\"x\":[1,{\"y\":\"}\"}]} , \"n\": -1.5e3 }\n}";
        assert_eq!(
            signed_node(body, node).unwrap(),
            "{ \"b\":\"\\u5f20\\/\", \"a\": {\"x\":[1,{\"y\":\"}\"}]} , \"n\": -1.5e3 }"
        );
        // Braces, quotes and backslashes inside strings do not end the node.
        let body = r#"{"alipay_fund_trans_uni_transfer_response":{"msg":"a \"}\" b\\","c":"{{["},"sign":"s"}"#;
        assert_eq!(
            signed_node(body, node).unwrap(),
            r#"{"msg":"a \"}\" b\\","c":"{{["}"#
        );
        // A nested member or a string value with the node's name is not it.
        let body = r#"{"other":{"alipay_fund_trans_uni_transfer_response":{"code":"1"}},"note":"alipay_fund_trans_uni_transfer_response","sign":"s"}"#;
        assert_eq!(signed_node(body, node), Err(ExtractError::Missing));
        let body = r#"{"error_response":{"code":"40002","sub_msg":"\"x\""},"sign":"s"}"#;
        assert_eq!(
            signed_node(body, "error_response").unwrap(),
            r#"{"code":"40002","sub_msg":"\"x\""}"#
        );
    }

    #[test]
    fn a_malformed_or_ambiguous_answer_gives_no_node() {
        let node = "n_response";
        for body in [
            "",
            "[]",
            "{",
            r#"{"n_response":{"a":1}"#,
            r#"{"n_response":{"a":"1}}"#,
            r#"{"n_response" {"a":1}}"#,
            r#"{"n_response":{"a":1}} trailing"#,
            r#"{"n_response":}"#,
        ] {
            assert!(signed_node(body, node).is_err(), "{body}");
        }
        assert_eq!(signed_node("{}", node), Err(ExtractError::Missing));
        assert_eq!(
            signed_node(r#"{"n_response":{},"n_response":{}}"#, node),
            Err(ExtractError::Repeated)
        );
    }

    /// Expected SNs computed once, independently, with openssl and md5:
    /// `openssl x509 -noout -issuer -nameopt RFC2253` + the serial from
    /// `openssl x509 -noout -serial` in decimal, piped to `openssl dgst -md5`.
    const APP_CERT_SN: &str = "05effdbaa2dd4c7c8fcb0119b496f799";
    const ALIPAY_CERT_SN: &str = "b0d12f0521d2b0a9378fc1b198bd0226";
    const ROOT_SHA256_SN: &str = "e319b691be34edd2601a007aba85a2db";
    const ROOT_SHA1_SN: &str = "910fd420da83cd0d1b63b55d3a9fd230";

    #[test]
    fn a_cert_sn_is_the_md5_of_the_rfc2253_issuer_and_the_decimal_serial() {
        let app = &certificates(APP_CERT).unwrap()[0];
        assert_eq!(
            issuer_dn_rfc2253(&app.tbs_certificate.issuer),
            "CN=Fenrun Test Alipay Root CA,OU=Test Only,O=Fenrun Sandbox,C=CN"
        );
        assert_eq!(cert_sn(app), APP_CERT_SN);
        // Serial F1E2D3C4B5A69788 has its top bit set: it is still read as
        // the unsigned 17429726349691885448.
        assert_eq!(
            cert_sn(&certificates(ALIPAY_CERT).unwrap()[0]),
            ALIPAY_CERT_SN
        );
    }

    #[test]
    fn the_root_sn_joins_the_rsa_signed_roots_in_order_and_skips_the_ec_one() {
        let bundle = certificates(ROOT_BUNDLE).unwrap();
        assert_eq!(bundle.len(), 3, "sha256 RSA root, EC root, sha1 RSA root");
        assert_eq!(
            root_cert_sn(&bundle),
            format!("{ROOT_SHA256_SN}_{ROOT_SHA1_SN}")
        );
    }

    #[test]
    fn a_root_signed_with_another_pkcs1_algorithm_counts_as_the_sdks_count_it() {
        let sha384 = certificates(include_str!(
            "../../sandbox-keys/alipay/root_rsa_sha384.crt"
        ))
        .unwrap();
        // openssl, as above, for this self-signed sha384WithRSA root.
        assert_eq!(root_cert_sn(&sha384), "9d1cbc5917cd956e17921d444fd857ec");
        let ec = certificates(include_str!("../../sandbox-keys/alipay/root_ec.crt")).unwrap();
        assert_eq!(root_cert_sn(&ec), "");
    }

    #[test]
    fn rfc2253_values_are_escaped() {
        assert_eq!(escape_rfc2253("a,b+c"), "a\\,b\\+c");
        assert_eq!(escape_rfc2253("#x "), "\\#x\\ ");
        assert_eq!(escape_rfc2253("Ant Financial"), "Ant Financial");
    }

    #[test]
    fn a_bundle_with_anything_but_certificates_is_refused() {
        assert!(certificates("").is_err());
        assert!(certificates(ALIPAY_PUBLIC).is_err());
        assert!(certificates(&format!("{APP_CERT}{ALIPAY_PUBLIC}")).is_err());
        assert_eq!(
            certificates(&format!("{APP_CERT}{ALIPAY_CERT}"))
                .unwrap()
                .len(),
            2
        );
    }
}
