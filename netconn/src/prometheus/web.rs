//! `--web-config-file`: TLS and basic authentication for the metrics
//! endpoint, in the format of the Prometheus exporter toolkit's
//! `--web.config.file` (node_exporter's and every toolkit exporter's), so
//! that a file written for them serves here:
//!
//! ```yaml
//! tls_server_config:
//!   cert_file: /etc/netconn/tls.crt
//!   key_file: /etc/netconn/tls.key
//! basic_auth_users:
//!   prometheus: $2y$10$...   # bcrypt
//! ```
//!
//! Relative paths are taken from the file's folder, as the toolkit does.
//! What netconn does not implement (client certificates, cipher and
//! version choices, HTTP/2, headers) is refused at load rather than
//! ignored: a file that asks for client certificates must not serve
//! without them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
#[error("--web-config-file {path}: {why}")]
pub struct WebConfigError {
    path: String,
    why: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWeb {
    tls_server_config: Option<RawTls>,
    basic_auth_users: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert_file: PathBuf,
    key_file: PathBuf,
}

/// The endpoint's protections, loaded.
pub struct Web {
    /// TLS, when configured.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// Users and their bcrypt hashes; empty: no authentication.
    users: BTreeMap<String, String>,
    /// `user:password` strings that verified already: bcrypt costs tens
    /// of milliseconds a check, and Prometheus sends the same every scrape.
    verified: Mutex<std::collections::HashSet<String>>,
}

impl Web {
    /// Loads and checks the file: certificate and key read and matched,
    /// every hash a bcrypt hash.
    pub fn load(path: &Path) -> Result<Arc<Self>, WebConfigError> {
        let err = |why: String| WebConfigError {
            path: path.display().to_string(),
            why,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(format!("cannot read: {e}")))?;
        let raw: RawWeb = serde_norway::from_str(&text).map_err(|e| {
            err(e
                .to_string()
                .replace('\n', " ")
                .replace("unknown field", "unsupported setting"))
        })?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let tls = match raw.tls_server_config {
            Some(t) => Some(acceptor(&dir.join(t.cert_file), &dir.join(t.key_file)).map_err(err)?),
            None => None,
        };
        let users = raw.basic_auth_users.unwrap_or_default();
        for (user, hash) in &users {
            if !hash.starts_with("$2") || bcrypt::verify("", hash).is_err() {
                return Err(err(format!(
                    "basic_auth_users.{user}: not a bcrypt hash (make one with htpasswd -nBC 10 \"\" | tr -d ':\\n')"
                )));
            }
        }
        if tls.is_none() && users.is_empty() {
            return Err(err(
                "neither tls_server_config nor basic_auth_users: nothing to do".into(),
            ));
        }
        Ok(Arc::new(Self {
            tls,
            users,
            verified: Mutex::new(Default::default()),
        }))
    }

    /// Whether requests must authenticate.
    pub fn needs_auth(&self) -> bool {
        !self.users.is_empty()
    }

    /// Whether an `Authorization` header's value lets the request in.
    /// Whether it asks clients for credentials.
    pub fn authenticates(&self) -> bool {
        !self.users.is_empty()
    }

    pub fn allows(&self, authorization: Option<&str>) -> bool {
        if self.users.is_empty() {
            return true;
        }
        let Some(pair) = authorization.and_then(basic_credentials) else {
            return false;
        };
        let Some((user, password)) = pair.split_once(':') else {
            return false;
        };
        let Some(hash) = self.users.get(user) else {
            return false;
        };
        let mut verified = self.verified.lock().expect("verified credentials");
        if verified.contains(&pair) {
            return true;
        }
        let ok = bcrypt::verify(password, hash).unwrap_or(false);
        if ok {
            verified.insert(pair);
        }
        ok
    }
}

/// `user:password` from `Basic <base64>`; None when it is not that.
fn basic_credentials(value: &str) -> Option<String> {
    use base64::Engine;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    String::from_utf8(bytes).ok()
}

/// A TLS acceptor from PEM files.
fn acceptor(cert: &Path, key: &Path) -> Result<tokio_rustls::TlsAcceptor, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("cert_file {}: {e}", cert.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("cert_file {}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!("cert_file {}: no certificate", cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("key_file {}: {e}", key.display()))?;
    // ring: builds with cc alone (aws-lc-rs, rustls' default, wants cmake
    // at build time). rustls deprecates it for lacking post-quantum key
    // exchange, which a metrics endpoint can do without.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("cert_file and key_file: {e}"))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn web(users: &[(&str, &str)]) -> Web {
        Web {
            tls: None,
            users: users
                .iter()
                .map(|(u, p)| ((*u).to_owned(), bcrypt::hash(p, 4).unwrap()))
                .collect(),
            verified: Mutex::new(Default::default()),
        }
    }

    #[test]
    fn basic_auth_checks_user_and_password() {
        use base64::Engine;
        let w = web(&[("prometheus", "s3cret")]);
        let header = |pair: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(pair)
            )
        };
        assert!(w.allows(Some(&header("prometheus:s3cret"))));
        // Again, from the cache.
        assert!(w.allows(Some(&header("prometheus:s3cret"))));
        assert!(!w.allows(Some(&header("prometheus:wrong"))));
        assert!(!w.allows(Some(&header("other:s3cret"))));
        assert!(!w.allows(Some("Bearer x")));
        assert!(!w.allows(Some("Basic !!!")));
        assert!(!w.allows(None));
        assert!(web(&[]).allows(None), "no users: open");
    }

    #[test]
    fn files_are_checked_at_load() {
        let dir = std::env::temp_dir().join(format!("netconn-web-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("web.yml");
        let load = |text: &str| {
            std::fs::write(&file, text).unwrap();
            Web::load(&file).map(|_| ()).map_err(|e| e.to_string())
        };
        let hash = bcrypt::hash("x", 4).unwrap();
        assert!(load(&format!("basic_auth_users:\n  p: {hash}\n")).is_ok());
        let e = load("basic_auth_users:\n  p: plain\n").unwrap_err();
        assert!(e.contains("not a bcrypt hash"), "{e}");
        let e = load("tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: RequireAndVerifyClientCert\n").unwrap_err();
        assert!(e.contains("unsupported setting"), "{e}");
        let e =
            load("tls_server_config:\n  cert_file: none.crt\n  key_file: none.key\n").unwrap_err();
        assert!(e.contains("cert_file"), "{e}");
        let e = load("{}\n").unwrap_err();
        assert!(e.contains("nothing to do"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
