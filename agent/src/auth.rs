//! Who may talk to an agent: TLS on the gRPC port and bearer tokens.
//!
//! Tokens come from a file, one per line (blank lines and `#` comments ignored). A request
//! must carry `authorization: Bearer TOKEN` with one of them, or it is refused with gRPC's
//! UNAUTHENTICATED before it reaches the service. Without a file every request is let in,
//! as the bundled local cluster expects. SIGHUP re-reads the file (a bad file keeps the
//! tokens in force), so tokens rotate without a restart.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use subtle::ConstantTimeEq;

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

/// The bearer-token check every request passes through. Clones share the token set, so a
/// reload reaches every connection.
#[derive(Debug, Clone, Default)]
pub struct TokenCheck {
    /// Where the tokens came from; `None`: authentication is off.
    path: Option<PathBuf>,
    tokens: Arc<RwLock<Arc<HashSet<Vec<u8>>>>>,
}

impl TokenCheck {
    /// Reads the tokens file, when one is configured.
    pub fn load(path: Option<&Path>) -> Result<TokenCheck, String> {
        let Some(path) = path else {
            return Ok(TokenCheck::default());
        };
        let tokens = read_tokens(path)?;
        Ok(TokenCheck {
            path: Some(path.to_path_buf()),
            tokens: Arc::new(RwLock::new(Arc::new(tokens))),
        })
    }

    /// A check over a tokens file's text, with no file behind it to reload.
    #[cfg(test)]
    fn parse(text: &str) -> Result<TokenCheck, String> {
        Ok(TokenCheck {
            path: Some(PathBuf::new()),
            tokens: Arc::new(RwLock::new(Arc::new(parse_tokens(text)?))),
        })
    }

    /// Whether authentication is on.
    pub fn enabled(&self) -> bool {
        self.path.is_some()
    }

    /// Re-reads the tokens file. On error the tokens in force stay. Returns how many tokens
    /// are accepted now.
    pub fn reload(&self) -> Result<usize, String> {
        let Some(path) = &self.path else {
            return Ok(0);
        };
        let tokens = read_tokens(path)?;
        let n = tokens.len();
        *self.tokens.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(tokens);
        Ok(n)
    }

    /// Whether an `authorization` header's value is acceptable.
    pub fn admits(&self, header: Option<&[u8]>) -> bool {
        if self.path.is_none() {
            return true;
        }
        header
            .and_then(bearer_credentials)
            .is_some_and(|given| self.admits_token(given))
    }

    /// Whether a bare token (as a Kafka client's SASL message carries it) is accepted.
    pub fn admits_token(&self, given: &[u8]) -> bool {
        if self.path.is_none() {
            return true;
        }
        let tokens = self
            .tokens
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        // Compare against every token in full, so timing says nothing about near misses.
        tokens
            .iter()
            .fold(false, |ok, t| ok | bool::from(t.as_slice().ct_eq(given)))
    }
}

/// The credentials of an `authorization` header in the `Bearer` scheme, whose name is
/// case-insensitive (RFC 9110, section 11.1): `Bearer`, `bearer` and `BEARER` all count.
fn bearer_credentials(header: &[u8]) -> Option<&[u8]> {
    const SCHEME: &[u8] = b"bearer ";
    let head = header.get(..SCHEME.len())?;
    head.eq_ignore_ascii_case(SCHEME)
        .then(|| header[SCHEME.len()..].trim_ascii_start())
}

fn read_tokens(path: &Path) -> Result<HashSet<Vec<u8>>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("reading tokens file {}: {e}", path.display()))?;
    parse_tokens(&text).map_err(|e| format!("tokens file {}: {e}", path.display()))
}

fn parse_tokens(text: &str) -> Result<HashSet<Vec<u8>>, String> {
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
    Ok(tokens)
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
        // The scheme's name is case-insensitive; the token is not.
        assert!(check.admits(Some(b"bearer abcdefghijklmnop")));
        assert!(check.admits(Some(b"BEARER qrstuvwxyz012345")));
        assert!(!check.admits(Some(b"Bearer ABCDEFGHIJKLMNOP")));
        assert!(!check.admits(Some(b"Bearerabcdefghijklmnop")));
        assert!(!check.admits(None));
        assert!(TokenCheck::default().admits(None), "off: everyone in");
        assert!(TokenCheck::parse("# nothing\n").is_err());
        assert!(TokenCheck::parse("short\n").is_err());
        assert!(TokenCheck::parse("has a space in it ok\n").is_err());
    }

    #[test]
    fn reload_takes_a_good_file_and_keeps_the_tokens_on_a_bad_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        std::fs::write(&path, "first-token-0123456789\n").unwrap();
        let check = TokenCheck::load(Some(&path)).unwrap();
        let shared = check.clone(); // as each connection's interceptor holds one
        std::fs::write(&path, "second-token-0123456789\n").unwrap();
        assert_eq!(check.reload(), Ok(1));
        assert!(shared.admits(Some(b"Bearer second-token-0123456789")));
        assert!(!shared.admits(Some(b"Bearer first-token-0123456789")));
        std::fs::write(&path, "# emptied by mistake\n").unwrap();
        assert!(check.reload().unwrap_err().contains("no tokens"));
        assert!(shared.admits(Some(b"Bearer second-token-0123456789")));
        std::fs::remove_file(&path).unwrap();
        assert!(check.reload().is_err());
        assert!(shared.admits(Some(b"Bearer second-token-0123456789")));
    }
}
