//! TLS to backends (re-encryption): the rustls client settings of a pool and the
//! handshake on a new backend connection.
//!
//! With `verify = true` (the default) the backend's certificate must chain to the pool's
//! CA bundle and be valid for `server_name` (or the backend's IP address). With
//! `verify = false` any certificate is accepted, as HAProxy's `ssl verify none`: the
//! traffic is encrypted but the backend is not authenticated.

use std::net::IpAddr;
use std::sync::Arc;

use rustls::ClientConfig;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::certs;
use crate::config::tls::BackendTls;

/// How a pool's connections to its backends are encrypted.
#[derive(Clone)]
pub struct BackendConnector {
    connector: TlsConnector,
    /// The configured name, if any (otherwise each backend's IP address).
    server_name: Option<ServerName<'static>>,
    /// What makes these connections different from others to the same address (CA,
    /// verification, name, ALPN): kept connections are reused only for the same key.
    pub key: u64,
}

impl std::fmt::Debug for BackendConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendConnector")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl BackendConnector {
    /// Builds the settings of a pool; `h2`: offer only HTTP/2 with ALPN, else HTTP/1.1.
    pub fn new(tls: &BackendTls, h2: bool) -> Result<BackendConnector, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        let mut config = match (&tls.ca, tls.verify) {
            (Some(ca), true) => builder
                .with_root_certificates(certs::load_roots(ca)?)
                .with_no_client_auth(),
            (None, true) => return Err("verifying backends needs a CA bundle (`ca`)".into()),
            (_, false) => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
                .with_no_client_auth(),
        };
        config.alpn_protocols = vec![if h2 {
            b"h2".to_vec()
        } else {
            b"http/1.1".to_vec()
        }];
        let server_name = match &tls.server_name {
            Some(name) => Some(ServerName::try_from(name.clone()).map_err(|e| e.to_string())?),
            None => None,
        };
        let identity = format!("{:?}|{}|{:?}|{h2}", tls.ca, tls.verify, tls.server_name);
        Ok(BackendConnector {
            connector: TlsConnector::from(Arc::new(config)),
            server_name,
            // Never 0, which stands for plain TCP.
            key: crate::balance::hash::hash_bytes(identity.as_bytes()) | 1,
        })
    }

    /// Runs the TLS handshake on a new connection to the backend at `ip`.
    pub async fn connect(
        &self,
        ip: IpAddr,
        tcp: TcpStream,
    ) -> std::io::Result<TlsStream<TcpStream>> {
        let name = match &self.server_name {
            Some(name) => name.clone(),
            None => ServerName::IpAddress(ip.into()),
        };
        self.connector.connect(name, tcp).await
    }
}

/// The verifier of `verify = false`: any certificate is accepted, but the handshake's
/// signatures are still checked (so the session keys are the backend's).
#[derive(Debug)]
struct AcceptAny(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
