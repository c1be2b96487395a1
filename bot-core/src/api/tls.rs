//! TLS for the client's transports: the platform's root certificates, read when a certificate
//! is first checked rather than when the client is built.
//!
//! Reading the system's roots (`rustls-native-certs`: some 140 PEM certificates parsed into
//! trust anchors) takes about 20 ms and 0.3 MiB that stay resident, and touches the PEM and
//! WebPKI code. A client whose base is `http://` (a local fake, a proxy on the host) may never
//! open a TLS connection, so it reads them only if it does. A client whose base is `https://`
//! reads them as it is built, as before: its first call needs them at once, and a machine
//! without any root certificate is still a configuration error at start-up, not at the first
//! call.
//!
//! Every TLS connection of one client (the built-in HTTP/2 transport and its HTTP/1.1
//! fallback through `reqwest`) shares one [`PlatformVerifier`], so the roots are read once per
//! client.

use std::fmt;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use crate::error::BoxError;

/// When the platform's roots are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Load {
    /// Now: building fails when they cannot be read.
    Now,
    /// At the first certificate checked; a failure then fails that handshake, and the next
    /// handshake reads them again (roots installed meanwhile are found).
    OnFirstUse,
}

impl Load {
    /// [`Load::Now`] for an `https://` base, [`Load::OnFirstUse`] for any other.
    pub(super) fn for_base(https: bool) -> Self {
        if https { Self::Now } else { Self::OnFirstUse }
    }
}

/// The platform's verifier (`rustls-platform-verifier`: the system's roots and the extra ones),
/// built once, when first needed.
pub(super) struct PlatformVerifier {
    provider: Arc<CryptoProvider>,
    /// Extra trusted roots (DER), parsed as the verifier is built.
    extra_roots: Vec<Vec<u8>>,
    /// Set once the roots were read; a failure to read them is not kept for good.
    built: OnceLock<rustls_platform_verifier::Verifier>,
    /// The last failure to read them, and when: handshakes within [`RETRY_ROOTS_AFTER`] of it
    /// fail with it instead of reading the files again.
    failed: Mutex<Option<(Instant, rustls::Error)>>,
}

/// How long a failure to read the platform's roots is answered from memory before they are read
/// again: a machine without roots does not pay the read (some 20 ms of blocking file reads and
/// parsing) at every handshake, nor log it every time.
const RETRY_ROOTS_AFTER: Duration = Duration::from_secs(5);

impl fmt::Debug for PlatformVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlatformVerifier")
            .field("extra_roots", &self.extra_roots.len())
            .field("loaded", &self.is_loaded())
            .finish_non_exhaustive()
    }
}

impl PlatformVerifier {
    /// A verifier trusting the platform's roots and `extra_roots`, read `load`, verifying
    /// signatures with `provider`.
    ///
    /// # Errors
    ///
    /// An extra root that is no certificate, whenever the roots are read; with [`Load::Now`],
    /// also roots that cannot be read (none on the system and no extra one).
    pub(super) fn new(
        extra_roots: &[Vec<u8>],
        load: Load,
        provider: Arc<CryptoProvider>,
    ) -> Result<Arc<Self>, BoxError> {
        let verifier = Arc::new(Self {
            provider,
            extra_roots: extra_roots.to_vec(),
            built: OnceLock::new(),
            failed: Mutex::new(None),
        });
        match load {
            Load::Now => {
                verifier.inner().map_err(|e| Box::new(e) as BoxError)?;
            }
            Load::OnFirstUse => {
                // The extra roots are the caller's own: a bad one is still an error now.
                let mut check = rustls::RootCertStore::empty();
                for der in extra_roots {
                    check.add(CertificateDer::from(der.as_slice()))?;
                }
            }
        }
        Ok(verifier)
    }

    /// The provider `reqwest` would use: the process's default, if one was installed, or
    /// aws-lc-rs.
    pub(super) fn default_provider() -> Arc<CryptoProvider> {
        CryptoProvider::get_default()
            .cloned()
            .unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
    }

    /// Whether the roots were read.
    pub(super) fn is_loaded(&self) -> bool {
        self.built.get().is_some()
    }

    /// The verifier, reading the roots if they were not read yet. A success is kept; a failure
    /// only for [`RETRY_ROOTS_AFTER`]: a machine whose roots could not be read (none installed
    /// yet, a certificate volume mounted late) is tried again after it, instead of failing every
    /// handshake for good. Handshakes that find the roots unread at once may each read them; one
    /// result is kept.
    fn inner(&self) -> Result<&rustls_platform_verifier::Verifier, rustls::Error> {
        if let Some(verifier) = self.built.get() {
            return Ok(verifier);
        }
        let mut failed = self.failed.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, e)) = failed.as_ref()
            && at.elapsed() < RETRY_ROOTS_AFTER
        {
            return Err(e.clone());
        }
        let extra = self
            .extra_roots
            .iter()
            .map(|der| CertificateDer::from(der.clone()));
        let provider = self.provider.clone();
        let verifier = if self.extra_roots.is_empty() {
            rustls_platform_verifier::Verifier::new(provider)
        } else {
            rustls_platform_verifier::Verifier::new_with_extra_roots(extra, provider)
        };
        match verifier {
            Ok(verifier) => {
                *failed = None;
                Ok(self.built.get_or_init(|| verifier))
            }
            Err(e) => {
                tracing::warn!(
                    error = %e,
                    retry_after = ?RETRY_ROOTS_AFTER,
                    "tls: the platform's root certificates cannot be read"
                );
                *failed = Some((Instant::now(), e.clone()));
                Err(e)
            }
        }
    }

    /// A client configuration verifying with this verifier, offering `alpn`: the protocol
    /// versions and the crypto provider the platform verifier's own configuration would have
    /// (rustls's safe defaults, this verifier's crypto provider), SNI on, no client certificate.
    pub(super) fn client_config(
        self: &Arc<Self>,
        alpn: &[&[u8]],
    ) -> Result<rustls::ClientConfig, BoxError> {
        let mut config = rustls::ClientConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(self.clone())
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(config)
    }
}

impl ServerCertVerifier for PlatformVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner()?
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner()?.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner()?.verify_tls13_signature(message, cert, dss)
    }

    /// The provider's schemes, which are the platform verifier's (it verifies with the same
    /// provider), without reading the roots: a client hello asks for them before any
    /// certificate arrives.
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aws_lc() -> Arc<CryptoProvider> {
        Arc::new(rustls::crypto::aws_lc_rs::default_provider())
    }

    /// A self-signed certificate for `localhost` (its own root), as DER.
    fn self_signed() -> Vec<u8> {
        let rcgen::CertifiedKey { cert, .. } =
            rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        cert.der().to_vec()
    }

    #[test]
    fn roots_are_read_at_the_first_certificate_checked_not_before() {
        let ca = self_signed();
        let verifier =
            PlatformVerifier::new(std::slice::from_ref(&ca), Load::OnFirstUse, aws_lc()).unwrap();
        let _config = verifier.client_config(&[b"h2"]).unwrap();
        assert!(!verifier.supported_verify_schemes().is_empty());
        assert!(
            !verifier.is_loaded(),
            "read before any certificate was checked"
        );

        let name = ServerName::try_from("localhost").unwrap();
        let leaf = CertificateDer::from(ca);
        verifier
            .verify_server_cert(&leaf, &[], &name, &[], UnixTime::now())
            .expect("the extra root is trusted");
        assert!(verifier.is_loaded());

        // Another CA's certificate is refused, by the same verifier.
        let stranger = self_signed();
        let refused = verifier.verify_server_cert(
            &CertificateDer::from(stranger),
            &[],
            &name,
            &[],
            UnixTime::now(),
        );
        assert!(refused.is_err());
    }

    #[test]
    fn an_https_base_reads_them_at_once_and_a_bad_extra_root_fails_the_build() {
        let ca = self_signed();
        let verifier = PlatformVerifier::new(&[ca], Load::for_base(true), aws_lc()).unwrap();
        assert!(verifier.is_loaded());
        for load in [Load::Now, Load::OnFirstUse] {
            assert!(
                PlatformVerifier::new(&[b"not a certificate".to_vec()], load, aws_lc()).is_err()
            );
        }
    }
}
