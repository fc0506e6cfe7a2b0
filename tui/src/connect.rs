//! How the console reaches a cluster: one process-wide TLS and token setting (from its
//! `--token-file`, `--tls-ca` and `--tls-domain` flags) applied to every client it builds.

use std::sync::OnceLock;
use std::time::Duration;

use streamhouse_client::{Admin, ClientError, ConsumerBuilder, ProducerBuilder, Security};

static SECURITY: OnceLock<Security> = OnceLock::new();

/// Sets the security every later client uses. The first setting wins.
pub fn set_security(security: Security) {
    let _ = SECURITY.set(security);
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
