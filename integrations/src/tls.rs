//! Whom the gateway clients trust over HTTPS.
//!
//! With the `tls` feature (the default) every client verifies the gateway's
//! certificate against the public roots compiled in (webpki-roots, Mozilla's
//! root program, through reqwest's `rustls-tls`), plus the [`ExtraRoots`] a
//! deployment names: a private CA in front of a proxy, or the test CA of a
//! sandbox served over HTTPS. Verification is never turned off; there is no
//! setting for it.
//!
//! Without the feature the clients speak plain HTTP only, so extra roots are
//! refused there rather than silently ignored.

use x509_cert::Certificate;
use x509_cert::der::Decode as _;

/// CA certificates to trust besides the public roots, checked when read:
/// every PEM block a parseable `CERTIFICATE`, at least one.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ExtraRoots {
    /// DER of each certificate, in file order.
    der: Vec<Vec<u8>>,
}

impl std::fmt::Debug for ExtraRoots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExtraRoots")
            .field("certificates", &self.der.len())
            .finish()
    }
}

/// Why a CA file cannot be used. Static text: a parser's own message could
/// quote the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ExtraRootsError(&'static str);

impl ExtraRoots {
    /// The certificates of a PEM text (one or more `CERTIFICATE` blocks).
    pub fn from_pem(pem_text: &str) -> Result<ExtraRoots, ExtraRootsError> {
        let certificates = pem_certificates(pem_text).map_err(ExtraRootsError)?;
        Ok(ExtraRoots {
            der: certificates.into_iter().map(|(_, der)| der).collect(),
        })
    }

    /// How many certificates are trusted besides the public roots.
    pub fn len(&self) -> usize {
        self.der.len()
    }

    pub fn is_empty(&self) -> bool {
        self.der.is_empty()
    }

    /// The client of `builder`, trusting these certificates too; an error
    /// names the setting at fault (`extra_roots`, `request_timeout`) and why.
    pub(crate) fn client(
        &self,
        builder: reqwest::ClientBuilder,
    ) -> Result<reqwest::Client, (&'static str, &'static str)> {
        self.apply(builder)
            .map_err(|reason| ("extra_roots", reason))?
            .build()
            .map_err(|_| ("request_timeout", "the HTTP client could not be built"))
    }

    /// `builder` trusting these certificates too. Without the `tls` feature
    /// only no certificates can be applied: there is no TLS to trust them in.
    fn apply(
        &self,
        builder: reqwest::ClientBuilder,
    ) -> Result<reqwest::ClientBuilder, &'static str> {
        #[cfg(feature = "tls")]
        {
            let mut builder = builder;
            for der in &self.der {
                let certificate = reqwest::Certificate::from_der(der)
                    .map_err(|_| "holds a certificate the TLS library refuses")?;
                builder = builder.add_root_certificate(certificate);
            }
            Ok(builder)
        }
        #[cfg(not(feature = "tls"))]
        {
            if self.der.is_empty() {
                Ok(builder)
            } else {
                Err("is set, but this build has no TLS (built without the `tls` feature)")
            }
        }
    }
}

/// Says why, when a call failed in the TLS handshake: the certificate
/// rustls refused (unknown issuer, wrong name, expired), which the
/// classification's "could not connect" hides, and which an operator needs
/// to tell a missing `gateway_ca_file` from a network fault. Only rustls's
/// own words are logged: the URL can carry a download token.
pub(crate) fn log_handshake_failure(error: &reqwest::Error) {
    #[cfg(feature = "tls")]
    {
        let mut next: Option<&(dyn std::error::Error + 'static)> = Some(error);
        while let Some(mut current) = next {
            // io::Error hides the error it wraps from `source()`, and the
            // connector wraps rustls's in two of them: unwrap by hand.
            while let Some(inner) = current
                .downcast_ref::<std::io::Error>()
                .and_then(std::io::Error::get_ref)
            {
                current = inner;
            }
            if let Some(tls) = current.downcast_ref::<rustls::Error>() {
                tracing::warn!(
                    error = %tls,
                    "the gateway's TLS handshake failed; nothing was sent (is its CA trusted? see gateway_ca_file)"
                );
                return;
            }
            next = current.source();
        }
    }
    #[cfg(not(feature = "tls"))]
    let _ = error;
}

/// Every certificate of a PEM text, parsed and as DER, in order. Anything
/// that is not a `CERTIFICATE` block, or does not parse, refuses the whole
/// text: a bundle read in part would trust less, or other, than it says.
pub(crate) fn pem_certificates(
    pem_text: &str,
) -> Result<Vec<(Certificate, Vec<u8>)>, &'static str> {
    let blocks = pem::parse_many(pem_text).map_err(|_| "is not PEM")?;
    if blocks.is_empty() {
        return Err("holds no certificate");
    }
    blocks
        .into_iter()
        .map(|block| {
            if block.tag() != "CERTIFICATE" {
                return Err("holds a PEM block that is not a CERTIFICATE");
            }
            let certificate = Certificate::from_der(block.contents())
                .map_err(|_| "holds a certificate that does not parse")?;
            Ok((certificate, block.into_contents()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A certificate shipped with the sandbox: any well-formed one will do.
    const A_CERTIFICATE: &str = include_str!("../sandbox-keys/alipay/alipay_root_cert.crt");

    #[test]
    fn a_ca_file_must_hold_certificates_and_only_certificates() {
        let roots = ExtraRoots::from_pem(A_CERTIFICATE).unwrap();
        assert!(!roots.is_empty());
        assert_eq!(
            format!("{roots:?}"),
            format!("ExtraRoots {{ certificates: {} }}", roots.len())
        );
        assert_eq!(
            ExtraRoots::from_pem("").unwrap_err().to_string(),
            "holds no certificate"
        );
        assert_eq!(
            ExtraRoots::from_pem("not pem at all\n")
                .unwrap_err()
                .to_string(),
            "holds no certificate"
        );
        let key = include_str!("../sandbox-keys/merchant_public_key.pem");
        assert_eq!(
            ExtraRoots::from_pem(&format!("{A_CERTIFICATE}{key}"))
                .unwrap_err()
                .to_string(),
            "holds a PEM block that is not a CERTIFICATE"
        );
        let garbage = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert_eq!(
            ExtraRoots::from_pem(garbage).unwrap_err().to_string(),
            "holds a certificate that does not parse"
        );
    }
}
