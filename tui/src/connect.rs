//! How the console, the scenarios and the demos reach a cluster: one process-wide TLS and
//! token setting (from the console's flags, or the `STREAMHOUSE_TOKEN_FILE`,
//! `STREAMHOUSE_TLS_CA` and `STREAMHOUSE_TLS_DOMAIN` environment variables) applied to every
//! client they build.

use std::sync::OnceLock;
use std::time::Duration;

use streamhouse_client::{Admin, ClientError, ConsumerBuilder, ProducerBuilder, Security};

static SECURITY: OnceLock<Security> = OnceLock::new();

/// Sets the security every later client uses. The first setting wins.
pub fn set_security(security: Security) {
    let _ = SECURITY.set(security);
}

/// Security from the environment: a token file, a CA file and a domain name, each optional.
pub fn security_from_env() -> Result<Security, ClientError> {
    let var = |n: &str| std::env::var(n).ok().filter(|v| !v.trim().is_empty());
    security_from(
        var("STREAMHOUSE_TOKEN_FILE").as_deref(),
        var("STREAMHOUSE_TLS_CA").as_deref(),
        var("STREAMHOUSE_TLS_DOMAIN").as_deref(),
    )
}

/// Security from a token file, a CA file and a domain name, each optional.
pub fn security_from(
    token_file: Option<&str>,
    tls_ca: Option<&str>,
    tls_domain: Option<&str>,
) -> Result<Security, ClientError> {
    let mut s = Security::new();
    if let Some(f) = token_file {
        s = s.token_file(f)?;
    }
    if let Some(f) = tls_ca {
        s = s.tls_ca_file(f)?;
    }
    if let Some(d) = tls_domain {
        s = s.tls_domain(d);
    }
    Ok(s)
}

/// The security in force: what was set, else plain TCP with no token.
pub fn security() -> Security {
    SECURITY.get().cloned().unwrap_or_default()
}

pub async fn admin(bootstrap: &str) -> Result<Admin, ClientError> {
    admin_with_timeout(bootstrap, Duration::from_secs(30)).await
}

pub async fn admin_with_timeout(bootstrap: &str, timeout: Duration) -> Result<Admin, ClientError> {
    Admin::connect_with(bootstrap, timeout, security()).await
}

pub fn producer() -> ProducerBuilder {
    streamhouse_client::Producer::builder().security(security())
}

pub fn consumer() -> ConsumerBuilder {
    streamhouse_client::Consumer::builder().security(security())
}
