//! TLS to PostgreSQL with rustls: `sslmode` and `sslrootcert` as libpq reads them.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::error::Error;

/// How a connection to PostgreSQL uses TLS: libpq's `sslmode`, read from the database URL
/// (`?sslmode=verify-full`, or `sslmode=verify-full` in the `key=value` form) or set with
/// [`PgPoolBuilder::ssl_mode`](super::PgPoolBuilder::ssl_mode).
///
/// As with libpq, `prefer` is the default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SslMode {
    /// No TLS: everything, passwords and payloads included, travels in clear text.
    Disable,
    /// TLS when the server offers it, without checking its certificate; clear text otherwise.
    #[default]
    Prefer,
    /// TLS or no connection; the certificate is not checked (encryption against eavesdroppers,
    /// not against an impostor), unless a root certificate is set, in which case it is
    /// `VerifyCa`, as in libpq.
    Require,
    /// TLS, and the server's certificate must chain to a trusted root.
    VerifyCa,
    /// TLS, the certificate must chain to a trusted root and name the host connected to.
    VerifyFull,
}

impl SslMode {
    /// The mode for libpq's name of it (`disable`, `prefer`, `require`, `verify-ca`,
    /// `verify-full`; `allow` is taken as `prefer`).
    pub fn from_libpq(name: &str) -> Option<Self> {
        match name {
            "disable" => Some(Self::Disable),
            "allow" | "prefer" => Some(Self::Prefer),
            "require" => Some(Self::Require),
            "verify-ca" => Some(Self::VerifyCa),
            "verify-full" => Some(Self::VerifyFull),
            _ => None,
        }
    }

    /// libpq's name of the mode.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }

    fn client_mode(self) -> tokio_postgres::config::SslMode {
        match self {
            Self::Disable => tokio_postgres::config::SslMode::Disable,
            Self::Prefer => tokio_postgres::config::SslMode::Prefer,
            Self::Require | Self::VerifyCa | Self::VerifyFull => {
                tokio_postgres::config::SslMode::Require
            }
        }
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where trusted root certificates come from.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum RootCerts {
    /// The operating system's store (libpq's `sslrootcert=system`), the default.
    System,
    /// A PEM file (`sslrootcert=/path`).
    File(PathBuf),
    /// PEM text given to the builder.
    Pem(Vec<u8>),
}

impl fmt::Debug for RootCerts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::System => f.write_str("System"),
            Self::File(p) => f.debug_tuple("File").field(p).finish(),
            Self::Pem(pem) => write!(f, "Pem({} bytes)", pem.len()),
        }
    }
}

/// The TLS settings found in a database URL, and the URL without them (tokio-postgres knows
/// neither `verify-*` nor `sslrootcert`).
#[derive(Debug)]
pub(crate) struct UrlTls {
    pub(crate) url: String,
    pub(crate) mode: Option<SslMode>,
    pub(crate) root_cert: Option<RootCerts>,
}

/// Takes `sslmode` and `sslrootcert` out of a URL (`postgres://...?sslmode=...`) or a
/// `key=value` connection string.
pub(crate) fn split_url(url: &str) -> Result<UrlTls, Error> {
    let mut mode = None;
    let mut root_cert = None;
    let mut take = |key: &str, value: &str| -> Result<bool, Error> {
        match key {
            "sslmode" => {
                mode = Some(SslMode::from_libpq(value).ok_or_else(|| {
                    Error::config(format!(
                        "postgres: sslmode {value:?} is not one of disable, prefer, require, \
                         verify-ca, verify-full"
                    ))
                })?);
                Ok(true)
            }
            "sslrootcert" => {
                root_cert = Some(if value == "system" {
                    RootCerts::System
                } else {
                    RootCerts::File(PathBuf::from(value))
                });
                Ok(true)
            }
            _ => Ok(false),
        }
    };
    let rest = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        match url.split_once('?') {
            None => url.to_owned(),
            Some((base, query)) => {
                let mut kept = Vec::new();
                for pair in query.split('&') {
                    let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                    if !take(key, &percent_decode(value))? {
                        kept.push(pair);
                    }
                }
                if kept.is_empty() {
                    base.to_owned()
                } else {
                    format!("{base}?{}", kept.join("&"))
                }
            }
        }
    } else {
        let mut kept = String::new();
        for (key, value, text) in key_values(url) {
            if !take(key, &value)? {
                if !kept.is_empty() {
                    kept.push(' ');
                }
                kept.push_str(text);
            }
        }
        kept
    };
    Ok(UrlTls {
        url: rest,
        mode,
        root_cert,
    })
}

/// The `key = value` pairs of a libpq connection string: key, unquoted value, original text.
/// Malformed text is passed through as a pair with an empty key, for tokio-postgres to reject.
fn key_values(s: &str) -> Vec<(&str, String, &str)> {
    let mut out = Vec::new();
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        if i == bytes.len() {
            break;
        }
        let start = i;
        while i < bytes.len() && bytes[i] != b'=' && !bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        let key = &s[start..i];
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        if i == bytes.len() || bytes[i] != b'=' {
            out.push(("", String::new(), &s[start..i]));
            continue;
        }
        i += 1;
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        let mut value = String::new();
        if i < bytes.len() && bytes[i] == b'\'' {
            i += 1;
            while i < bytes.len() && bytes[i] != b'\'' {
                if bytes[i] == b'\\' && i + 1 < bytes.len() {
                    i += 1;
                }
                let c = s[i..].chars().next().unwrap_or('\0');
                value.push(c);
                i += c.len_utf8();
            }
            i = (i + 1).min(bytes.len());
        } else {
            let value_start = i;
            while i < bytes.len() && !bytes[i].is_ascii_whitespace() {
                i += 1;
            }
            value.push_str(&s[value_start..i]);
        }
        out.push((key, value, &s[start..i]));
    }
    out
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The connector for `mode`, and the mode tokio-postgres must use to negotiate TLS.
pub(crate) fn connector(
    mode: SslMode,
    root_cert: Option<&RootCerts>,
) -> Result<(MakeRustlsConnect, tokio_postgres::config::SslMode), Error> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    // libpq: `require` with a root certificate file is `verify-ca`.
    let mode = match (mode, root_cert) {
        (SslMode::Require, Some(RootCerts::File(_) | RootCerts::Pem(_))) => SslMode::VerifyCa,
        (mode, _) => mode,
    };
    let verifier: Arc<dyn ServerCertVerifier> = match mode {
        SslMode::Disable | SslMode::Prefer | SslMode::Require => {
            Arc::new(EncryptOnly(provider.clone()))
        }
        SslMode::VerifyCa | SslMode::VerifyFull => {
            let roots = Arc::new(root_store(root_cert.unwrap_or(&RootCerts::System))?);
            let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
                .build()
                .map_err(|e| {
                    Error::config("postgres: cannot use the root certificates").with_source(e)
                })?;
            if mode == SslMode::VerifyCa {
                Arc::new(ChainOnly(webpki))
            } else {
                webpki
            }
        }
    };
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::config("postgres: no TLS protocol version available").with_source(e))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok((MakeRustlsConnect::new(config), mode.client_mode()))
}

fn root_store(source: &RootCerts) -> Result<RootCertStore, Error> {
    let mut store = RootCertStore::empty();
    let (what, certs) = match source {
        RootCerts::System => {
            let found = rustls_native_certs::load_native_certs();
            ("the system's certificate store".to_owned(), found.certs)
        }
        RootCerts::File(path) => {
            let pem = std::fs::read(path).map_err(|e| {
                Error::config(format!(
                    "postgres: cannot read sslrootcert {}",
                    path.display()
                ))
                .with_source(e)
            })?;
            (format!("sslrootcert {}", path.display()), parse_pem(&pem))
        }
        RootCerts::Pem(pem) => ("the root certificate PEM".to_owned(), parse_pem(pem)),
    };
    let (added, _ignored) = store.add_parsable_certificates(certs);
    if added == 0 {
        return Err(Error::config(format!(
            "postgres: {what} holds no usable certificate; verify-ca and verify-full need one"
        )));
    }
    Ok(store)
}

fn parse_pem(pem: &[u8]) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(pem)
        .filter_map(Result::ok)
        .collect()
}

/// `prefer` and `require`: the connection is encrypted, and the handshake's signatures are
/// checked, but any certificate is accepted (libpq does the same).
#[derive(Debug)]
struct EncryptOnly(Arc<CryptoProvider>);

impl ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
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

/// `verify-ca`: the chain must lead to a trusted root; the host name is not compared.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // webpki checks the chain before the name, so a name error means the chain is good.
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// `url` with the password replaced by `[redacted]`, for Debug output.
pub(crate) fn redact_url(url: &str) -> String {
    if let Some(scheme_end) = url.find("://") {
        let after = &url[scheme_end + 3..];
        let authority_end = after.find(['/', '?']).unwrap_or(after.len());
        let authority = &after[..authority_end];
        if let Some(at) = authority.rfind('@') {
            let userinfo = &authority[..at];
            if let Some(colon) = userinfo.find(':') {
                return format!(
                    "{}{}:[redacted]{}",
                    &url[..scheme_end + 3],
                    &userinfo[..colon],
                    &after[at..]
                );
            }
        }
        // A password in the query (`?password=...`) is redacted below too.
        return redact_query_password(url);
    }
    key_values(url)
        .into_iter()
        .map(|(key, _, text)| {
            if key == "password" {
                "password=[redacted]".to_owned()
            } else {
                text.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn redact_query_password(url: &str) -> String {
    match url.split_once('?') {
        None => url.to_owned(),
        Some((base, query)) => {
            let pairs: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some(("password", _)) => "password=[redacted]".to_owned(),
                    _ => pair.to_owned(),
                })
                .collect();
            format!("{base}?{}", pairs.join("&"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sslmode_and_sslrootcert_leave_the_url() {
        let t = split_url("postgres://u@h:5432/db?sslmode=verify-full&sslrootcert=%2Ftmp%2Fca.pem&connect_timeout=3")
            .unwrap();
        assert_eq!(t.url, "postgres://u@h:5432/db?connect_timeout=3");
        assert_eq!(t.mode, Some(SslMode::VerifyFull));
        assert_eq!(t.root_cert, Some(RootCerts::File("/tmp/ca.pem".into())));
        let t = split_url("postgres://u@h/db?sslmode=require").unwrap();
        assert_eq!(
            (t.url.as_str(), t.mode),
            ("postgres://u@h/db", Some(SslMode::Require))
        );
        let t = split_url("host=h user=u sslmode = verify-ca sslrootcert='/a b/c.pem' dbname=d")
            .unwrap();
        assert_eq!(t.url, "host=h user=u dbname=d");
        assert_eq!(t.mode, Some(SslMode::VerifyCa));
        assert_eq!(t.root_cert, Some(RootCerts::File("/a b/c.pem".into())));
        let e = split_url("postgres://h/db?sslmode=sometimes").unwrap_err();
        assert!(e.to_string().contains("sometimes"), "{e}");
        assert_eq!(split_url("postgres://h/db").unwrap().mode, None);
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("postgres://bot:s3cret@db:5432/x?sslmode=require"),
            "postgres://bot:[redacted]@db:5432/x?sslmode=require"
        );
        assert_eq!(
            redact_url("postgres://bot@db/x?password=s3cret"),
            "postgres://bot@db/x?password=[redacted]"
        );
        assert_eq!(
            redact_url("host=db password='s e cret' user=bot"),
            "host=db password=[redacted] user=bot"
        );
    }

    #[test]
    fn verification_needs_a_usable_root() {
        let e = connector(
            SslMode::VerifyFull,
            Some(&RootCerts::Pem(b"nothing".to_vec())),
        )
        .err()
        .unwrap();
        assert!(e.to_string().contains("no usable certificate"), "{e}");
        let e = connector(
            SslMode::VerifyCa,
            Some(&RootCerts::File("/nonexistent/ca.pem".into())),
        )
        .err()
        .unwrap();
        assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
    }
}
