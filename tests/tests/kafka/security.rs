//! The Kafka listener with the agent's TLS certificate and tokens: librdkafka authenticates
//! with SASL/PLAIN and SASL/OAUTHBEARER over TLS (kcat and confluent-kafka); a wrong token,
//! no SASL, or no TLS gets nothing.

use kafka_protocol::messages::{
    SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};

use super::*;

const TOKEN: &str = "kafka-token-0123456789abcdef";

/// An agent serving Kafka with TLS and tokens; returns it, its Kafka address and the CA file.
fn secured_agent(dir: &std::path::Path) -> (AgentProcess, String, String) {
    streamhouse_tests::write_certs(dir);
    std::fs::write(dir.join("tokens"), format!("{TOKEN}\n")).unwrap();
    let path = |f: &str| dir.join(f).display().to_string();
    let (agent, kafka) = kafka_agent_with(
        dir,
        &[
            "--tls-cert",
            &path("agent.pem"),
            "--tls-key",
            &path("agent.key"),
            "--auth-tokens-file",
            &path("tokens"),
        ],
    );
    (agent, kafka, path("ca.pem"))
}

/// `kcat -L` with `settings`: its output, or its error.
fn kcat_list(kcat: &str, kafka: &str, settings: &[&str]) -> Result<String, String> {
    let mut args = vec!["-L", "-m", "5", "-b", kafka];
    for s in settings {
        args.extend(["-X", s]);
    }
    let out = client(kcat).args(&args).output().expect("run kcat");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kcat_authenticates_with_sasl_plain_over_tls_and_strangers_get_nothing() {
    let Some(kcat) = kcat() else {
        return;
    };
    let (_guard, dir) = data_dir();
    let (_agent, kafka, ca) = secured_agent(&dir);
    let ca_setting = format!("ssl.ca.location={ca}");
    let password = format!("sasl.password={TOKEN}");
    let sasl_ssl = [
        "security.protocol=SASL_SSL",
        "sasl.mechanisms=PLAIN",
        "sasl.username=app",
        &password,
        &ca_setting,
    ];
    let listing = kcat_list(kcat, &kafka, &sasl_ssl).expect("kcat with the token");
    assert!(listing.contains("1 brokers:"), "{listing}");
    assert!(listing.contains(&kafka), "{listing}");

    // A wrong token: refused, and librdkafka says why.
    let wrong = format!("sasl.password={TOKEN}x");
    let mut refused = sasl_ssl.to_vec();
    refused[3] = &wrong;
    let err = kcat_list(kcat, &kafka, &refused).expect_err("a wrong token");
    assert!(err.contains("not accepted"), "{err}");
    // TLS without SASL: the agent ends the connection at the first request past ApiVersions.
    let err =
        kcat_list(kcat, &kafka, &["security.protocol=SSL", &ca_setting]).expect_err("no SASL");
    assert!(err.contains("Failed to acquire metadata"), "{err}");
    // Neither TLS nor SASL.
    let err = kcat_list(kcat, &kafka, &[]).expect_err("plaintext");
    assert!(err.contains("Failed to acquire metadata"), "{err}");
    // A certificate the client does not trust.
    let elsewhere = tempfile::tempdir().unwrap();
    streamhouse_tests::write_certs(elsewhere.path());
    let other_ca = format!(
        "ssl.ca.location={}",
        elsewhere.path().join("ca.pem").display()
    );
    let mut untrusted = sasl_ssl.to_vec();
    untrusted[4] = &other_ca;
    let err = kcat_list(kcat, &kafka, &untrusted).expect_err("an untrusted certificate");
    assert!(err.contains("certificate verify failed"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn librdkafka_produces_and_consumes_with_oauthbearer_and_plain_tokens() {
    if !python_has("confluent_kafka", "confluent-kafka") {
        return;
    }
    let (_guard, dir) = data_dir();
    let (_agent, kafka, ca) = secured_agent(&dir);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/kafka_clients/secured.py");
    let out = client("python3")
        .args([script, "--bootstrap", &kafka, "--ca", &ca, "--token", TOKEN])
        .args(["--topic", "secrets"])
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "the secured librdkafka run failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");
}

/// An agent with tokens but no TLS (Kafka's SASL_PLAINTEXT), so raw frames can be sent.
fn sasl_plaintext_agent(dir: &std::path::Path) -> (AgentProcess, String) {
    std::fs::write(dir.join("tokens"), format!("{TOKEN}\n")).unwrap();
    let tokens = dir.join("tokens").display().to_string();
    kafka_agent_with(dir, &["--auth-tokens-file", &tokens])
}

fn handshake(s: &mut TcpStream, version: i16, mechanism: &str) -> SaslHandshakeResponse {
    call(
        s,
        version,
        &SaslHandshakeRequest::default().with_mechanism(StrBytes::from_string(mechanism.into())),
    )
}

fn authenticate(s: &mut TcpStream, message: &[u8]) -> SaslAuthenticateResponse {
    call(
        s,
        2,
        &SaslAuthenticateRequest::default().with_auth_bytes(Bytes::copy_from_slice(message)),
    )
}

/// Whether the agent ended the connection (after whatever it answered first).
fn ended(s: &mut TcpStream) -> bool {
    read_frame(s).is_none()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_exchanges_refuse_every_wrong_step() {
    let (_guard, dir) = data_dir();
    let (_agent, kafka) = sasl_plaintext_agent(&dir);
    let plain = format!("\0app\0{TOKEN}");
    let code = |e: ResponseError| e.code();

    // Before authenticating: ApiVersions is answered, anything else ends the connection.
    let mut s = connect(&kafka);
    let v: ApiVersionsResponse = call(&mut s, 3, &ApiVersionsRequest::default());
    assert_eq!(v.error_code, 0);
    let mut early = connect(&kafka);
    send(&mut early, 12, &MetadataRequest::default());
    assert!(ended(&mut early), "Metadata before SASL was answered");

    // A mechanism not offered: refused with the list; the connection stays for another try.
    let h = handshake(&mut s, 1, "SCRAM-SHA-256");
    assert_eq!(h.error_code, code(ResponseError::UnsupportedSaslMechanism));
    let offered: Vec<&str> = h.mechanisms.iter().map(|m| m.as_str()).collect();
    assert_eq!(offered, ["PLAIN", "OAUTHBEARER"]);
    // PLAIN with the token: in, and Metadata is answered.
    assert_eq!(handshake(&mut s, 1, "PLAIN").error_code, 0);
    assert_eq!(authenticate(&mut s, plain.as_bytes()).error_code, 0);
    assert!(metadata(&mut s, 12, None).brokers.len() == 1);
    // Authenticating again on the same connection is out of order.
    assert_eq!(
        handshake(&mut s, 1, "PLAIN").error_code,
        code(ResponseError::IllegalSaslState)
    );

    // OAUTHBEARER with the token.
    let mut s = connect(&kafka);
    assert_eq!(handshake(&mut s, 1, "OAUTHBEARER").error_code, 0);
    let ob = format!("n,,\x01auth=Bearer {TOKEN}\x01\x01");
    assert_eq!(authenticate(&mut s, ob.as_bytes()).error_code, 0);
    assert!(metadata(&mut s, 12, None).brokers.len() == 1);

    // Version 0: the SASL message follows bare, and success is an empty frame.
    let mut s = connect(&kafka);
    assert_eq!(handshake(&mut s, 0, "PLAIN").error_code, 0);
    let mut bare = BytesMut::new();
    bare.put_i32(plain.len() as i32);
    bare.extend_from_slice(plain.as_bytes());
    s.write_all(&bare).unwrap();
    assert_eq!(read_frame(&mut s).as_deref(), Some(&b""[..]));
    assert!(metadata(&mut s, 12, None).brokers.len() == 1);

    // Wrong or malformed tokens, and SaslAuthenticate without a handshake: each answered with
    // why, then the connection ends.
    for message in [
        format!("\0app\0{TOKEN}x").into_bytes(),
        b"\0app\0".to_vec(),
        vec![0xff; 64],
        Vec::new(),
    ] {
        let mut s = connect(&kafka);
        assert_eq!(handshake(&mut s, 1, "PLAIN").error_code, 0);
        let a = authenticate(&mut s, &message);
        assert_eq!(
            a.error_code,
            code(ResponseError::SaslAuthenticationFailed),
            "{message:?}"
        );
        assert!(a.error_message.is_some());
        assert!(ended(&mut s), "{message:?}");
    }
    let mut s = connect(&kafka);
    let a = authenticate(&mut s, plain.as_bytes());
    assert_eq!(a.error_code, code(ResponseError::IllegalSaslState));
    assert!(ended(&mut s));
    // A wrong bare message after version 0: no answer, the connection ends.
    let mut s = connect(&kafka);
    assert_eq!(handshake(&mut s, 0, "PLAIN").error_code, 0);
    let mut bare = BytesMut::new();
    bare.put_i32(3);
    bare.extend_from_slice(b"\0\0x");
    s.write_all(&bare).unwrap();
    assert!(ended(&mut s));
}
