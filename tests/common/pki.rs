//! A throwaway certificate authority for TLS tests, made with the `openssl` command:
//! a CA, and server certificates it signs for the names a test asks for.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

/// A CA in a temporary directory.
pub struct Pki {
    pub dir: tempfile::TempDir,
    pub ca: PathBuf,
    ca_key: PathBuf,
    serial: std::cell::Cell<u32>,
}

/// A certificate and its key, as files.
#[derive(Clone)]
pub struct Leaf {
    pub cert: PathBuf,
    pub key: PathBuf,
}

fn openssl(args: &[&str], cwd: &Path) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Pki {
    pub fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        openssl(
            &[
                "ecparam",
                "-name",
                "prime256v1",
                "-genkey",
                "-noout",
                "-out",
                "ca.key",
            ],
            d,
        );
        openssl(
            &[
                "req",
                "-x509",
                "-new",
                "-key",
                "ca.key",
                "-sha256",
                "-days",
                "400",
                "-subj",
                "/CN=Fulcrum Test CA",
                "-out",
                "ca.pem",
            ],
            d,
        );
        Pki {
            ca: d.join("ca.pem"),
            ca_key: d.join("ca.key"),
            dir,
            serial: std::cell::Cell::new(1),
        }
    }

    /// A server certificate for `names` (DNS names or IP addresses), signed by the CA,
    /// written as `<file>.pem` and `<file>.key`.
    pub fn leaf(&self, file: &str, names: &[&str]) -> Leaf {
        let d = self.dir.path();
        let san: Vec<String> = names
            .iter()
            .map(|n| match n.parse::<std::net::IpAddr>() {
                Ok(_) => format!("IP:{n}"),
                Err(_) => format!("DNS:{n}"),
            })
            .collect();
        std::fs::write(
            d.join(format!("{file}.ext")),
            // A revocation URI and a year's validity, as real certificates have (testssl
            // rates certificates without either HIGH).
            format!(
                "subjectAltName={}\ncrlDistributionPoints=URI:http://127.0.0.1/test.crl\n",
                san.join(",")
            ),
        )
        .unwrap();
        let key = format!("{file}.key");
        let csr = format!("{file}.csr");
        let pem = format!("{file}.pem");
        let sec1 = format!("{file}.ec");
        openssl(
            &[
                "ecparam",
                "-name",
                "prime256v1",
                "-genkey",
                "-noout",
                "-out",
                &sec1,
            ],
            d,
        );
        // PKCS#8, like most tools write today.
        openssl(
            &["pkcs8", "-topk8", "-nocrypt", "-in", &sec1, "-out", &key],
            d,
        );
        let subject = format!("/CN={}", names[0]);
        openssl(
            &["req", "-new", "-key", &key, "-subj", &subject, "-out", &csr],
            d,
        );
        let serial = self.serial.get();
        self.serial.set(serial + 1);
        openssl(
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-set_serial",
                &serial.to_string(),
                "-days",
                "400",
                "-sha256",
                "-extfile",
                &format!("{file}.ext"),
                "-out",
                &pem,
            ],
            d,
        );
        let _ = &self.ca_key;
        Leaf {
            cert: d.join(pem),
            key: d.join(key),
        }
    }
}

impl Leaf {
    /// rustls server settings serving this certificate (for TLS backends), offering `alpn`.
    pub fn server_config(&self, alpn: &[&str]) -> Arc<rustls::ServerConfig> {
        use rustls::pki_types::pem::PemObject;
        let certs = rustls::pki_types::CertificateDer::pem_file_iter(&self.cert)
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = rustls::pki_types::PrivateKeyDer::from_pem_file(&self.key).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        Arc::new(config)
    }
}
