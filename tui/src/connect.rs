//! How the console reaches a cluster: the security (TLS and a token, from `--token-file`,
//! `--tls-ca` and `--tls-domain` when attached; none for the cluster it launches) applied to
//! every client it builds. One value, handed to whatever builds clients.

use std::time::Duration;

use streamhouse_client::{Admin, ClientError, ConsumerBuilder, ProducerBuilder, Security};

/// Builds the console's clients with its security.
#[derive(Debug, Clone, Default)]
pub struct Connect {
    security: Security,
}

impl Connect {
    /// Clients with `security`.
    pub fn new(security: Security) -> Connect {
        Connect { security }
    }

    /// An admin client for `bootstrap` whose requests give up after `timeout`.
    pub async fn admin(&self, bootstrap: &str, timeout: Duration) -> Result<Admin, ClientError> {
        Admin::connect_with(bootstrap, timeout, self.security.clone()).await
    }

    /// A producer builder; the caller sets the bootstrap.
    pub fn producer(&self) -> ProducerBuilder {
        streamhouse_client::Producer::builder().security(self.security.clone())
    }

    /// A consumer builder; the caller sets the bootstrap.
    pub fn consumer(&self) -> ConsumerBuilder {
        streamhouse_client::Consumer::builder().security(self.security.clone())
    }
}
