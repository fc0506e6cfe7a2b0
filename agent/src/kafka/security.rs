//! Who may speak Kafka to an agent: the same TLS certificate and bearer tokens as the gRPC
//! port.
//!
//! With `--tls-cert`/`--tls-key` the listener speaks TLS (Kafka's `SSL`); with
//! `--auth-tokens-file` a connection must authenticate with SASL before any other request
//! (Kafka's `SASL_SSL`, or `SASL_PLAINTEXT` without TLS, which the agent warns about):
//!
//! - `PLAIN`: the password is a token; the user name is not checked (tokens name no users).
//! - `OAUTHBEARER`: the bearer token of the client's first message is a token (RFC 7628).
//!
//! Until then only ApiVersions, SaslHandshake and SaslAuthenticate are answered; anything else
//! ends the connection, as a Kafka broker does. A failed authentication is answered with
//! `SASL_AUTHENTICATION_FAILED` and ends the connection.

use std::sync::Arc;

use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::AgentConfig;
use crate::auth::TokenCheck;

/// The mechanisms offered, in the order SaslHandshake lists them.
pub(crate) const MECHANISMS: &[&str] = &["PLAIN", "OAUTHBEARER"];

/// The listener's TLS and SASL, from the agent's settings.
#[derive(Clone)]
pub(crate) struct Security {
    pub tls: Option<TlsAcceptor>,
    /// When enabled, every connection authenticates first.
    pub tokens: TokenCheck,
}

impl std::fmt::Debug for Security {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Security")
            .field("tls", &self.tls.is_some())
            .field("sasl", &self.tokens.enabled())
            .finish()
    }
}

impl Security {
    /// Builds the TLS side from the certificate and key the config names (already checked to
    /// be PEM by the gRPC side), sharing `tokens` with the gRPC port so a reload reaches both.
    pub fn new(config: &AgentConfig, tokens: TokenCheck) -> Result<Security, String> {
        let tls = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => {
                let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
                    .and_then(|certs| certs.collect())
                    .map_err(|e| {
                        format!(
                            "tls_cert {}: {e}; give a PEM certificate chain",
                            cert.display()
                        )
                    })?;
                let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
                    format!("tls_key {}: {e}; give a PEM private key", key.display())
                })?;
                let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
                let server = rustls::ServerConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .map_err(|e| format!("TLS for the Kafka listener: {e}"))?
                    .with_no_client_auth()
                    .with_single_cert(chain, key)
                    .map_err(|e| format!("tls_cert and tls_key do not make a usable pair: {e}"))?;
                Some(TlsAcceptor::from(Arc::new(server)))
            }
            _ => None,
        };
        Ok(Security { tls, tokens })
    }

    /// Whether connections must authenticate before anything else.
    pub fn sasl(&self) -> bool {
        self.tokens.enabled()
    }
}

/// Why a SASL exchange failed, as the client is told.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SaslError {
    #[error("mechanism {0:?} is not offered; PLAIN and OAUTHBEARER are")]
    Mechanism(String),
    #[error("SaslAuthenticate before SaslHandshake named a mechanism")]
    NoHandshake,
    #[error("the {0} message does not parse")]
    Malformed(&'static str),
    #[error("the token is not accepted")]
    Refused,
}

/// The token a client's first message carries for `mechanism`.
pub(crate) fn token_of<'a>(mechanism: &str, message: &'a [u8]) -> Result<&'a [u8], SaslError> {
    match mechanism {
        // RFC 4616: [authzid] NUL authcid NUL passwd.
        "PLAIN" => {
            let mut parts = message.splitn(3, |b| *b == 0);
            let (_authz, user, password) = (parts.next(), parts.next(), parts.next());
            match (user, password) {
                (Some(u), Some(p)) if !u.is_empty() && !p.is_empty() && !p.contains(&0) => Ok(p),
                _ => Err(SaslError::Malformed("PLAIN")),
            }
        }
        // RFC 7628: a GS2 header, then key=value pairs each ended by 0x01, then 0x01; the
        // token is in `auth=Bearer TOKEN`.
        "OAUTHBEARER" => {
            let malformed = SaslError::Malformed("OAUTHBEARER");
            let mut fields = message.split(|b| *b == 1);
            let gs2 = fields.next().ok_or_else(|| malformed.clone())?;
            if !(gs2.starts_with(b"n,") || gs2.starts_with(b"y,")) {
                return Err(malformed);
            }
            for kv in fields {
                if let Some(value) = kv.strip_prefix(b"auth=") {
                    const SCHEME: &[u8] = b"bearer ";
                    let head = value.get(..SCHEME.len()).ok_or_else(|| malformed.clone())?;
                    if !head.eq_ignore_ascii_case(SCHEME) {
                        return Err(malformed);
                    }
                    let token = value[SCHEME.len()..].trim_ascii();
                    return if token.is_empty() {
                        Err(malformed)
                    } else {
                        Ok(token)
                    };
                }
            }
            Err(malformed)
        }
        other => Err(SaslError::Mechanism(other.to_string())),
    }
}

/// Checks a client's first SASL message against the tokens.
pub(crate) fn authenticate(
    tokens: &TokenCheck,
    mechanism: &str,
    message: &[u8],
) -> Result<(), SaslError> {
    let token = token_of(mechanism, message)?;
    if tokens.admits_token(token) {
        Ok(())
    } else {
        Err(SaslError::Refused)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn plain_and_oauthbearer_carry_the_token() {
        assert_eq!(token_of("PLAIN", b"\0alice\0s3cret"), Ok(&b"s3cret"[..]));
        assert_eq!(
            token_of("PLAIN", b"admin\0alice\0s3cret"),
            Ok(&b"s3cret"[..])
        );
        for bad in [&b""[..], b"\0\0x", b"\0alice\0", b"alice", b"\0alice\0a\0b"] {
            assert_eq!(
                token_of("PLAIN", bad),
                Err(SaslError::Malformed("PLAIN")),
                "{bad:?}"
            );
        }
        let ob = b"n,,\x01auth=Bearer tok-123\x01\x01";
        assert_eq!(token_of("OAUTHBEARER", ob), Ok(&b"tok-123"[..]));
        let with_user = b"n,a=alice,\x01host=x\x01auth=bearer  tok-123 \x01\x01";
        assert_eq!(token_of("OAUTHBEARER", with_user), Ok(&b"tok-123"[..]));
        for bad in [
            &b""[..],
            b"n,,",
            b"n,,\x01auth=Basic abc\x01\x01",
            b"n,,\x01auth=Bearer \x01\x01",
            b"p,,\x01auth=Bearer tok\x01\x01",
        ] {
            assert!(token_of("OAUTHBEARER", bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            token_of("SCRAM-SHA-256", b"x"),
            Err(SaslError::Mechanism("SCRAM-SHA-256".into()))
        );
    }

    proptest! {
        /// Any bytes a client sends are a token or a refusal, never a panic.
        #[test]
        fn any_message_parses_or_is_refused(m in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = token_of("PLAIN", &m);
            let _ = token_of("OAUTHBEARER", &m);
        }
    }
}
