//! TLS and bearer tokens: how a client checks the agents it talks to and proves who it is.

use std::path::Path;

use tonic::metadata::MetadataValue;
use tonic::service::Interceptor;
use tonic::transport::{Certificate, ClientTlsConfig};

use crate::error::{ClientError, Result};

/// A client's TLS and token settings, shared by [`crate::Producer`], [`crate::Consumer`] and
/// [`crate::Admin`]. The default is plain TCP with no token, as the bundled local cluster
/// expects.
///
/// ```
/// use streamhouse_client::Security;
/// let security = Security::new()
///     .tls_ca_pem(b"-----BEGIN CERTIFICATE-----\n...\n-----END CERTIFICATE-----\n".to_vec())
///     .tls_domain("agents.example.com")
///     .token("s3cr3t");
/// assert!(security.uses_tls());
/// ```
#[derive(Clone, Default)]
pub struct Security {
    ca_pem: Option<Vec<u8>>,
    domain: Option<String>,
    token: Option<String>,
}

impl std::fmt::Debug for Security {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Security")
            .field("tls", &self.ca_pem.is_some())
            .field("domain", &self.domain)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl Security {
    /// Plain TCP, no token.
    ///
    /// ```
    /// assert!(!streamhouse_client::Security::new().uses_tls());
    /// ```
    pub fn new() -> Self {
        Security::default()
    }

    /// Connect over TLS, trusting agents whose certificate this PEM CA (or CA bundle) signed.
    ///
    /// ```
    /// let s = streamhouse_client::Security::new().tls_ca_pem(b"...".to_vec());
    /// assert!(s.uses_tls());
    /// ```
    pub fn tls_ca_pem(mut self, pem: Vec<u8>) -> Self {
        self.ca_pem = Some(pem);
        self
    }

    /// [`Security::tls_ca_pem`] from a file.
    ///
    /// ```
    /// let missing = streamhouse_client::Security::new().tls_ca_file("/no/such/ca.pem");
    /// assert!(missing.is_err());
    /// ```
    pub fn tls_ca_file(self, path: impl AsRef<Path>) -> Result<Self> {
        let pem = read(path.as_ref(), "CA")?;
        Ok(self.tls_ca_pem(pem))
    }

    /// The name to verify agents' certificates against, when it is not the host in their
    /// address (agents advertised by IP with a certificate for a DNS name).
    ///
    /// ```
    /// let s = streamhouse_client::Security::new().tls_domain("agents.internal");
    /// ```
    pub fn tls_domain(mut self, name: impl Into<String>) -> Self {
        self.domain = Some(name.into());
        self
    }

    /// Send `authorization: Bearer TOKEN` with every request.
    ///
    /// ```
    /// let s = streamhouse_client::Security::new().token("s3cr3t");
    /// ```
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// [`Security::token`] from the first non-empty line of a file.
    ///
    /// ```
    /// let missing = streamhouse_client::Security::new().token_file("/no/such/token");
    /// assert!(missing.is_err());
    /// ```
    pub fn token_file(self, path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = String::from_utf8(read(path, "token")?).map_err(|_| {
            ClientError::InvalidConfig(format!("token file {} is not UTF-8", path.display()))
        })?;
        let token = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .ok_or_else(|| {
                ClientError::InvalidConfig(format!("token file {} is empty", path.display()))
            })?;
        Ok(self.token(token))
    }

    /// Settings from files, each optional: a token file ([`Security::token_file`]), a CA file
    /// ([`Security::tls_ca_file`]; TLS when given) and the name to verify agents against
    /// ([`Security::tls_domain`]).
    ///
    /// ```
    /// use streamhouse_client::Security;
    /// assert!(!Security::from_files(None, None, None)?.uses_tls());
    /// assert!(Security::from_files(Some("/no/such/token".as_ref()), None, None).is_err());
    /// # Ok::<(), streamhouse_client::ClientError>(())
    /// ```
    pub fn from_files(
        token_file: Option<&Path>,
        tls_ca_file: Option<&Path>,
        tls_domain: Option<&str>,
    ) -> Result<Self> {
        let mut s = Security::new();
        if let Some(f) = token_file {
            s = s.token_file(f)?;
        }
        if let Some(f) = tls_ca_file {
            s = s.tls_ca_file(f)?;
        }
        if let Some(d) = tls_domain {
            s = s.tls_domain(d);
        }
        Ok(s)
    }

    /// [`Security::from_files`] named by the environment: `STREAMHOUSE_TOKEN_FILE`,
    /// `STREAMHOUSE_TLS_CA` and `STREAMHOUSE_TLS_DOMAIN`, each optional (unset or blank: not
    /// used). With none set, plain TCP with no token.
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), streamhouse_client::ClientError> {
    /// let security = streamhouse_client::Security::from_env()?;
    /// let producer = streamhouse_client::Producer::builder()
    ///     .bootstrap("127.0.0.1:9660")
    ///     .security(security)
    ///     .build()
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn from_env() -> Result<Self> {
        let var = |n: &str| std::env::var(n).ok().filter(|v| !v.trim().is_empty());
        let token = var("STREAMHOUSE_TOKEN_FILE");
        let ca = var("STREAMHOUSE_TLS_CA");
        let domain = var("STREAMHOUSE_TLS_DOMAIN");
        Security::from_files(
            token.as_deref().map(Path::new),
            ca.as_deref().map(Path::new),
            domain.as_deref(),
        )
    }

    /// Whether connections use TLS.
    ///
    /// ```
    /// assert!(!streamhouse_client::Security::default().uses_tls());
    /// ```
    pub fn uses_tls(&self) -> bool {
        self.ca_pem.is_some()
    }

    /// Checks the settings before any connection is made.
    pub(crate) fn validate(&self) -> Result<()> {
        if let Some(t) = &self.token {
            bearer(t)?;
        }
        Ok(())
    }

    pub(crate) fn scheme(&self) -> &'static str {
        if self.uses_tls() { "https" } else { "http" }
    }

    pub(crate) fn tls_config(&self) -> Option<ClientTlsConfig> {
        let pem = self.ca_pem.as_ref()?;
        let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem));
        if let Some(d) = &self.domain {
            tls = tls.domain_name(d.clone());
        }
        Some(tls)
    }

    pub(crate) fn interceptor(&self) -> Auth {
        Auth {
            header: self.token.as_deref().and_then(|t| bearer(t).ok()),
        }
    }
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>> {
    std::fs::read(path)
        .map_err(|e| ClientError::InvalidConfig(format!("reading {what} {}: {e}", path.display())))
}

fn bearer(token: &str) -> Result<MetadataValue<tonic::metadata::Ascii>> {
    let mut v: MetadataValue<tonic::metadata::Ascii> =
        format!("Bearer {token}").parse().map_err(|_| {
            ClientError::InvalidConfig("a token must be printable ASCII without newlines".into())
        })?;
    v.set_sensitive(true);
    Ok(v)
}

/// Adds the bearer token, when there is one, to every request.
#[derive(Debug, Clone)]
pub struct Auth {
    header: Option<MetadataValue<tonic::metadata::Ascii>>,
}

impl Interceptor for Auth {
    fn call(
        &mut self,
        mut req: tonic::Request<()>,
    ) -> std::result::Result<tonic::Request<()>, tonic::Status> {
        if let Some(h) = &self.header {
            req.metadata_mut().insert("authorization", h.clone());
        }
        Ok(req)
    }
}
