//! Who may talk to an agent: TLS on the gRPC port and bearer tokens.
//!
//! Tokens come from a file, one per line (blank lines and `#` comments ignored). A request
//! must carry `authorization: Bearer TOKEN` with one of them, or it is refused with gRPC's
//! UNAUTHENTICATED before it reaches the service. Without a file every request is let in,
//! as the bundled local cluster expects.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use tonic::service::Interceptor;
use tonic::transport::Identity;

use crate::AgentConfig;

/// The certificate and key the config names, read and paired.
pub fn load_identity(config: &AgentConfig) -> Result<Option<Identity>, String> {
    let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) else {
        return Ok(None);
    };
    let read = |p: &Path, what: &str| {
        std::fs::read(p).map_err(|e| format!("reading TLS {what} {}: {e}", p.display()))
    };
    let cert = read(cert, "certificate")?;
    let key = read(key, "key")?;
    if !String::from_utf8_lossy(&cert).contains("-----BEGIN CERTIFICATE-----") {
        return Err("the TLS certificate file holds no PEM certificate".into());
    }
    if !String::from_utf8_lossy(&key).contains("PRIVATE KEY-----") {
        return Err("the TLS key file holds no PEM private key".into());
    }
    Ok(Some(Identity::from_pem(cert, key)))
}

/// The bearer-token check every request passes through.
#[derive(Debug, Clone, Default)]
pub struct TokenCheck {
    /// `None`: authentication is off.
    tokens: Option<Arc<HashSet<Vec<u8>>>>,
}

impl TokenCheck {
    /// Reads the tokens file, when one is configured.
    pub fn load(path: Option<&Path>) -> Result<TokenCheck, String> {
        let Some(path) = path else {
            return Ok(TokenCheck::default());
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("reading tokens file {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("tokens file {}: {e}", path.display()))
    }

    /// Parses a tokens file's text.
    pub fn parse(text: &str) -> Result<TokenCheck, String> {
        let mut tokens = HashSet::new();
        for (n, line) in text.lines().enumerate() {
            let t = line.trim();
            if t.is_empty() || t.starts_with('#') {
                continue;
            }
            if t.len() < 16 || !t.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(format!(
                    "line {}: a token is at least 16 printable ASCII characters without spaces",
                    n + 1
                ));
            }
            tokens.insert(t.as_bytes().to_vec());
        }
        if tokens.is_empty() {
            return Err("no tokens: every request would be refused".into());
        }
        Ok(TokenCheck {
            tokens: Some(Arc::new(tokens)),
        })
    }

    /// Whether an `authorization` header's value is acceptable.
    pub fn admits(&self, header: Option<&[u8]>) -> bool {
        let Some(tokens) = &self.tokens else {
            return true;
        };
        let Some(given) = header.and_then(|h| h.strip_prefix(b"Bearer ")) else {
            return false;
        };
        // Compare against every token in full, so timing says nothing about near misses.
        tokens
            .iter()
            .fold(false, |ok, t| ok | constant_time_eq(t, given))
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Interceptor for TokenCheck {
    fn call(&mut self, req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        let header = req.metadata().get("authorization").map(|v| v.as_bytes());
        if self.admits(header) {
            Ok(req)
        } else if header.is_none() {
            Err(tonic::Status::unauthenticated(
                "this cluster requires a bearer token (authorization: Bearer TOKEN)",
            ))
        } else {
            Err(tonic::Status::unauthenticated(
                "the bearer token is not accepted",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_file_parses_and_checks() {
        let check = TokenCheck::parse("# ops\nabcdefghijklmnop\n\n  qrstuvwxyz012345  \n").unwrap();
        assert!(check.admits(Some(b"Bearer abcdefghijklmnop")));
        assert!(check.admits(Some(b"Bearer qrstuvwxyz012345")));
        assert!(!check.admits(Some(b"Bearer abcdefghijklmnoq")));
        assert!(!check.admits(Some(b"abcdefghijklmnop")));
        assert!(!check.admits(Some(b"Bearer ")));
        assert!(!check.admits(None));
        assert!(TokenCheck::default().admits(None), "off: everyone in");
        assert!(TokenCheck::parse("# nothing\n").is_err());
        assert!(TokenCheck::parse("short\n").is_err());
        assert!(TokenCheck::parse("has a space in it ok\n").is_err());
    }
}
