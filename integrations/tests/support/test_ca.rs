//! A throwaway certificate authority for tests that serve the sandbox over
//! HTTPS: a CA made in the test, and a server certificate it issues for the
//! loopback names (`127.0.0.1`, `localhost`). Nothing is written to disk
//! unless a test asks; nothing outlives the test.
//!
//! Shared by `integrations/tests/sandbox_tls.rs` and `tests/api/gateway_tls.rs`
//! (included there by path), so both rings of tests use one recipe.

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// A CA certificate and a server identity it issued, all PEM.
pub struct TestCa {
    /// The CA's certificate: what a client must be told to trust.
    pub ca_pem: String,
    /// The server's certificate, then the CA's (a chain as servers send it).
    pub server_chain_pem: String,
    /// The server certificate's private key (PKCS#8).
    pub server_key_pem: String,
}

impl TestCa {
    /// A fresh CA named `name`, and a server certificate for the loopback
    /// names signed by it.
    pub fn new(name: &str) -> TestCa {
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        ca.distinguished_name.push(DnType::CommonName, name);
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().expect("CA key"))
            .expect("self-signed CA");

        let mut server =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
                .expect("server parameters");
        server
            .distinguished_name
            .push(DnType::CommonName, "fenrun sandbox (test)");
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        server.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let server_key = KeyPair::generate().expect("server key");
        let server_cert = server
            .signed_by(&server_key, &ca)
            .expect("server certificate");
        TestCa {
            ca_pem: ca.pem(),
            server_chain_pem: format!("{}{}", server_cert.pem(), ca.pem()),
            server_key_pem: server_key.serialize_pem(),
        }
    }
}
