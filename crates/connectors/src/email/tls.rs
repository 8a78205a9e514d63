//! How the bridge talks to mail servers: TLS from the first byte, STARTTLS, or (on a trusted
//! network only) in the clear; and which certificates it trusts: the system's, and the
//! authority of `ANYREPLY_EMAIL_CA_FILE` for a mail server with a certificate of its own.

use std::sync::Arc;

use anyhow::Context;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// A connection's protection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// TLS from the first byte: IMAP on 993, SMTP submission on 465.
    Tls,
    /// In the clear, then `STARTTLS` before anything else: IMAP on 143, SMTP on 587.
    StartTls,
    /// Never encrypted: only for a server on the same host or a trusted network.
    Plain,
}

impl Security {
    /// The setting's choices.
    pub const CHOICES: &'static [(&'static str, Security)] = &[
        ("tls", Self::Tls),
        ("starttls", Self::StartTls),
        ("plain", Self::Plain),
    ];
}

/// The certificates trusted besides the system's.
#[derive(Debug, Clone, Default)]
pub struct Trust {
    /// `ANYREPLY_EMAIL_CA_FILE`'s PEM, as read.
    pub pem: Option<Vec<u8>>,
}

impl Trust {
    /// Reads the PEM file at `path`, checking that it holds a certificate.
    pub fn read(path: &str) -> anyhow::Result<Self> {
        let pem = std::fs::read(path).with_context(|| format!("cannot read {path}"))?;
        let trust = Self { pem: Some(pem) };
        anyhow::ensure!(
            !trust.roots()?.is_empty(),
            "{path} holds no PEM certificate"
        );
        Ok(trust)
    }

    fn roots(&self) -> anyhow::Result<Vec<CertificateDer<'static>>> {
        let Some(pem) = &self.pem else {
            return Ok(Vec::new());
        };
        CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .context("not a PEM certificate")
    }

    /// A TLS client checking servers against the system's roots and ours.
    pub fn connector(&self) -> anyhow::Result<tokio_rustls::TlsConnector> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let verifier = rustls_platform_verifier::Verifier::new_with_extra_roots(
            self.roots()?,
            provider.clone(),
        )
        .context("cannot load the system's certificates")?;
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("no TLS version in common")?
            .dangerous() // not dangerous: the platform's verifier, with our roots added
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();
        Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
    }

    /// For lettre's SMTP transport: our roots on top of the system's.
    pub fn smtp(
        &self,
        host: &str,
    ) -> anyhow::Result<lettre::transport::smtp::client::TlsParameters> {
        let mut parameters =
            lettre::transport::smtp::client::TlsParameters::builder(host.to_owned());
        if let Some(pem) = &self.pem {
            let roots = lettre::transport::smtp::client::Certificate::from_pem(pem)
                .context("ANYREPLY_EMAIL_CA_FILE is not a PEM certificate")?;
            parameters = parameters.add_root_certificate(roots);
        }
        parameters.build_rustls().context("cannot set up TLS")
    }
}

/// A connection to a mail server, encrypted or not.
pub trait Connection: AsyncRead + AsyncWrite + Unpin + Send + std::fmt::Debug {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + std::fmt::Debug> Connection for T {}

/// Opens TCP to `host:port`.
pub async fn connect(host: &str, port: u16) -> anyhow::Result<TcpStream> {
    TcpStream::connect((host, port))
        .await
        .with_context(|| format!("cannot connect to {host}:{port}"))
}

/// Encrypts `stream` to `host`, checking its certificate.
pub async fn encrypt(
    connector: &tokio_rustls::TlsConnector,
    host: &str,
    stream: Box<dyn Connection>,
) -> anyhow::Result<Box<dyn Connection>> {
    let name = ServerName::try_from(host.to_owned())
        .with_context(|| format!("{host} is not a host name for TLS"))?;
    let tls = connector
        .connect(name, stream)
        .await
        .with_context(|| format!("TLS with {host} failed"))?;
    Ok(Box::new(tls))
}
