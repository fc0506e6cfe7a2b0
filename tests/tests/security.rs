//! TLS and bearer tokens: an agent started with a certificate and a tokens file refuses a
//! client without the CA, without a token or with a wrong token, and serves one with both.

use std::path::Path;
use std::time::Duration;

use streamhouse_agent::{AgentConfig, EmbeddedAgent};
use streamhouse_client::{
    Admin, ClientError, Consumer, NewTopic, OffsetReset, Producer, Security, TopicPartition,
};
use streamhouse_tests::write_certs;

const TOKEN: &str = "test-token-0123456789abcdef";

fn secured_agent(dir: &Path) -> (EmbeddedAgent, Vec<u8>) {
    let ca = write_certs(dir);
    std::fs::write(
        dir.join("tokens"),
        format!("# clients\n{TOKEN}\nanother-token-fedcba9876543210\n"),
    )
    .unwrap();
    let mut config =
        AgentConfig::embedded(dir, "127.0.0.1:0").expect("STREAMHOUSE_* settings parse");
    config.tls_cert = Some(dir.join("agent.pem"));
    config.tls_key = Some(dir.join("agent.key"));
    config.auth_tokens_file = Some(dir.join("tokens"));
    (EmbeddedAgent::start(config, 2).unwrap(), ca)
}

async fn admin(addr: &str, security: Security) -> Result<Admin, ClientError> {
    let admin = Admin::connect_with(addr, Duration::from_secs(5), security).await?;
    admin.list_topics().await?;
    Ok(admin)
}

#[test]
fn tls_and_tokens_refuse_strangers_and_serve_the_configured() {
    let dir = tempfile::tempdir().unwrap();
    let (agent, ca) = secured_agent(dir.path());
    let addr = agent.addr().to_string();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        // No TLS at all: the agent speaks TLS only.
        let plain = admin(&addr, Security::new().token(TOKEN)).await;
        assert!(matches!(plain, Err(ClientError::Unreachable(_))), "{plain:?}");
        // TLS without the CA: the agent's certificate is not trusted.
        let elsewhere = tempfile::tempdir().unwrap();
        let other_ca = write_certs(elsewhere.path());
        let untrusted = admin(&addr, Security::new().tls_ca_pem(other_ca).token(TOKEN)).await;
        assert!(matches!(untrusted, Err(ClientError::Unreachable(_))), "{untrusted:?}");
        // The right CA, but no token or a wrong one: refused, with a typed error.
        let no_token = admin(&addr, Security::new().tls_ca_pem(ca.clone())).await;
        assert!(matches!(&no_token, Err(ClientError::Unauthenticated(m)) if m.contains("requires a bearer token")), "{no_token:?}");
        let wrong = admin(
            &addr,
            Security::new()
                .tls_ca_pem(ca.clone())
                .token("test-token-0123456789abcdeX"),
        )
        .await;
        assert!(matches!(&wrong, Err(ClientError::Unauthenticated(m)) if m.contains("not accepted")), "{wrong:?}");
        // A producer with no token fails fast rather than retrying until its deadline.
        let p = Producer::builder()
            .bootstrap(&addr)
            .security(Security::new().tls_ca_pem(ca.clone()))
            .build()
            .await;
        let refused = match p {
            Err(e) => e,
            Ok(p) => p.send_and_wait("t", None, b"x").await.unwrap_err(),
        };
        assert!(matches!(refused, ClientError::Unauthenticated(_)), "{refused:?}");

        // With both, everything works: admin, produce, consume.
        let security = Security::new().tls_ca_pem(ca.clone()).token(TOKEN);
        let admin = admin(&addr, security.clone()).await.unwrap();
        admin.create_topic(NewTopic::new("t", 1)).await.unwrap();
        let p = Producer::builder()
            .bootstrap(&addr)
            .security(security.clone())
            .build()
            .await
            .unwrap();
        for i in 0..10 {
            p.send("t", None, format!("{i}").as_bytes()).await.unwrap();
        }
        p.close().await.unwrap();
        let mut c = Consumer::builder()
            .bootstrap(&addr)
            .security(security.clone().tls_domain("localhost"))
            .auto_offset_reset(OffsetReset::Earliest)
            .build()
            .await
            .unwrap();
        c.assign(vec![TopicPartition::new("t", 0)]).await.unwrap();
        let mut got = 0;
        while got < 10 {
            got += c.poll(Duration::from_millis(200)).await.unwrap().len();
        }
        c.close().await.unwrap();
    });
    agent.stop().unwrap();
}

#[test]
fn bad_security_settings_fail_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut config =
        AgentConfig::embedded(dir.path(), "127.0.0.1:0").expect("STREAMHOUSE_* settings parse");
    config.tls_cert = Some(dir.path().join("missing.pem"));
    config.tls_key = Some(dir.path().join("missing.key"));
    let e = EmbeddedAgent::start(config, 1).unwrap_err().to_string();
    assert!(e.contains("reading TLS certificate"), "{e}");

    let mut config =
        AgentConfig::embedded(dir.path(), "127.0.0.1:0").expect("STREAMHOUSE_* settings parse");
    config.tls_cert = Some(dir.path().join("only-cert.pem"));
    let e = EmbeddedAgent::start(config, 1).unwrap_err().to_string();
    assert!(e.contains("go together"), "{e}");

    std::fs::write(dir.path().join("tokens"), "# none yet\n").unwrap();
    let mut config =
        AgentConfig::embedded(dir.path(), "127.0.0.1:0").expect("STREAMHOUSE_* settings parse");
    config.auth_tokens_file = Some(dir.path().join("tokens"));
    let e = EmbeddedAgent::start(config, 1).unwrap_err().to_string();
    assert!(e.contains("no tokens"), "{e}");
}

/// Tokens rotate without a restart: after the file changes, SIGHUP makes the agent accept
/// the new token and refuse the removed one.
#[test]
fn sighup_reloads_the_tokens_file() {
    const OLD: &str = "rotating-token-old-0123456789";
    const NEW: &str = "rotating-token-new-0123456789";
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, format!("{OLD}\n")).unwrap();
    let agent = streamhouse_tests::AgentProcess::start(
        env!("CARGO_BIN_EXE_test-agent"),
        dir.path(),
        &["--auth-tokens-file", tokens.to_str().unwrap()],
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let works = |token: &'static str| {
            let addr = agent.addr.clone();
            async move { admin(&addr, Security::new().token(token)).await.is_ok() }
        };
        assert!(works(OLD).await);
        assert!(!works(NEW).await);
        std::fs::write(&tokens, format!("# rotated\n{NEW}\n")).unwrap();
        agent.signal(streamhouse_tests::Signal::SIGHUP);
        let deadline = streamhouse_tests::Deadline::within(Duration::from_secs(30));
        while !works(NEW).await {
            deadline.check("the new token never took");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(!works(OLD).await, "the removed token still works");
    });
    assert!(agent.terminate().success());
}
