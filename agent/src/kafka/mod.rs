//! The Kafka listener: Kafka clients and tools speak to an agent in Kafka's own protocol.
//!
//! Each connection reads size-prefixed request frames, decodes them with the
//! `kafka-protocol` codec (vendored with array reservations bounded by the frame), and answers
//! them in the order they came (Kafka's rule: a client matches answers by order as well as by
//! correlation id). Up to [`PIPELINED`] requests are in hand at once: each is started in
//! order, and its answer (a produce's commit, a fetch's long poll, a group's barrier) is
//! written when it and every answer before it are ready.
//!
//! What is served is in [`apis::SUPPORTED`]; `ApiVersions` advertises exactly that. A request
//! outside it is answered `UNSUPPORTED_VERSION` where the API's answer has an error code of its
//! own ([`apis::refusal`]); otherwise, like a frame over the agent's request limit or one that
//! does not decode, it ends the connection with one log line, as a Kafka broker does, since no
//! answer of the right shape can be written for it. An `ApiVersions` request of a version
//! newer than ours is answered at version 0 with `UNSUPPORTED_VERSION` and the versions we
//! have, as Kafka does, so the client can step down. TLS and SASL are in [`security`].

mod apis;
mod data;
mod groups;
pub(crate) mod security;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader};
use kafka_protocol::messages::{SaslAuthenticateResponse, SaslHandshakeResponse};
use kafka_protocol::protocol::{Decodable, Encodable};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::Shared;

/// Where this agent serves Kafka clients and who it is to them.
#[derive(Debug, Clone)]
pub(crate) struct KafkaIdentity {
    /// The `HOST:PORT` it gives clients.
    pub advertise: String,
    /// Its broker id: stable for the agent id, from the metadata store.
    pub node_id: i32,
    /// Wakes requests held at a Kafka group's barrier when the group changes.
    pub groups: Arc<groups::Wakers>,
}

impl KafkaIdentity {
    pub(crate) fn new(advertise: String, node_id: i32) -> KafkaIdentity {
        KafkaIdentity {
            advertise,
            node_id,
            groups: Arc::default(),
        }
    }
}

/// Longest a client may take over its TLS handshake.
const TLS_HANDSHAKE: std::time::Duration = std::time::Duration::from_secs(10);

/// Accepts Kafka connections until `stop` turns true.
pub(crate) async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    security: security::Security,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.wait_for(|s| *s) => return,
        };
        match accepted {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                let shared = shared.clone();
                let security = security.clone();
                tokio::spawn(async move {
                    let sasl = security.sasl().then(|| security.tokens.clone());
                    let served = match &security.tls {
                        None => {
                            let (rd, wr) = stream.into_split();
                            connection(rd, wr, Some(peer), sasl, &shared).await
                        }
                        Some(tls) => {
                            match tokio::time::timeout(TLS_HANDSHAKE, tls.accept(stream)).await {
                                Ok(Ok(stream)) => {
                                    let (rd, wr) = tokio::io::split(stream);
                                    connection(rd, wr, Some(peer), sasl, &shared).await
                                }
                                Ok(Err(e)) => Err(ConnectionEnd::Tls(e.to_string())),
                                Err(_) => Err(ConnectionEnd::Tls(format!(
                                    "no TLS handshake within {} s",
                                    TLS_HANDSHAKE.as_secs()
                                ))),
                            }
                        }
                    };
                    match served {
                        Ok(()) => {}
                        // The client went away: nothing an operator need act on.
                        Err(why @ ConnectionEnd::Io(_)) => {
                            tracing::debug!(%peer, "Kafka connection closed: {why}");
                        }
                        Err(why) => tracing::warn!(%peer, "Kafka connection closed: {why}"),
                    }
                });
            }
            Err(e) => {
                // Out of file descriptors and the like: wait a moment rather than spin.
                tracing::warn!(error = %e, "Kafka listener: accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

/// Why a connection ended before its client closed it.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectionEnd {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("request of {size} bytes; the frame must be 8 to {max} bytes")]
    FrameSize { size: i32, max: usize },
    #[error("API key {0} is not a Kafka API")]
    UnknownApi(i16),
    #[error("{api:?} v{version} is not served here (ApiVersions lists what is)")]
    Unsupported { api: ApiKey, version: i16 },
    #[error("{api:?} v{version} request does not decode: {why}")]
    Malformed {
        api: ApiKey,
        version: i16,
        why: String,
    },
    #[error("{api:?} v{version} answer does not encode: {why}")]
    Encode {
        api: ApiKey,
        version: i16,
        why: String,
    },
    #[error("TLS: {0}")]
    Tls(String),
    #[error("{0:?} before SASL authentication; this listener requires SASL (PLAIN or OAUTHBEARER)")]
    Unauthenticated(ApiKey),
    #[error("SASL authentication failed: {0}")]
    AuthenticationFailed(security::SaslError),
}

/// Where a connection stands with SASL.
#[derive(Debug)]
pub(crate) struct Sasl {
    /// The tokens it must present one of; `None`: the listener does not use SASL.
    tokens: Option<crate::auth::TokenCheck>,
    /// The mechanism SaslHandshake chose.
    mechanism: Option<&'static str>,
    done: bool,
    /// Why the connection ends once the answer being written is out.
    failed: Option<security::SaslError>,
    /// A version 0 SaslHandshake succeeded: the next frame is a bare SASL message.
    raw_next: bool,
}

impl Sasl {
    fn new(tokens: Option<crate::auth::TokenCheck>) -> Sasl {
        Sasl {
            tokens,
            mechanism: None,
            done: false,
            failed: None,
            raw_next: false,
        }
    }

    /// Whether requests other than ApiVersions and SASL's own may be served.
    fn admits(&self) -> bool {
        self.tokens.is_none() || self.done
    }

    fn handshake(&mut self, mechanism: &str, version: i16) -> SaslHandshakeResponse {
        let offered = security::MECHANISMS
            .iter()
            .map(|m| kafka_protocol::protocol::StrBytes::from_static_str(m))
            .collect();
        let code = if self.tokens.is_none() || self.done {
            ResponseError::IllegalSaslState
        } else if let Some(m) = security::MECHANISMS.iter().find(|m| **m == mechanism) {
            self.mechanism = Some(m);
            self.raw_next = version == 0;
            return SaslHandshakeResponse::default().with_mechanisms(offered);
        } else {
            ResponseError::UnsupportedSaslMechanism
        };
        SaslHandshakeResponse::default()
            .with_error_code(code.code())
            .with_mechanisms(offered)
    }

    fn authenticate(&mut self, message: &[u8]) -> SaslAuthenticateResponse {
        let refuse = |code: ResponseError, why: String| {
            SaslAuthenticateResponse::default()
                .with_error_code(code.code())
                .with_error_message(Some(kafka_protocol::protocol::StrBytes::from_string(why)))
        };
        let (Some(tokens), false) = (&self.tokens, self.done) else {
            return refuse(
                ResponseError::IllegalSaslState,
                "this connection is not authenticating".into(),
            );
        };
        let Some(mechanism) = self.mechanism else {
            let e = security::SaslError::NoHandshake;
            self.failed = Some(e.clone());
            return refuse(ResponseError::IllegalSaslState, e.to_string());
        };
        match security::authenticate(tokens, mechanism, message) {
            Ok(()) => {
                self.done = true;
                SaslAuthenticateResponse::default()
            }
            Err(e) => {
                let answer = refuse(ResponseError::SaslAuthenticationFailed, e.to_string());
                self.failed = Some(e);
                answer
            }
        }
    }
}

/// Requests a connection may have read and not yet answered. Kafka's idempotent producers
/// keep up to 5 in flight; a flush answers them together.
const PIPELINED: usize = 8;

/// An answer on its way: its bytes (size prefix included), or none (`acks=0`).
type Pending = Pin<Box<dyn Future<Output = Result<Option<BytesMut>, ConnectionEnd>> + Send>>;

/// Reads requests and starts each in turn (a produce's batches reach the writer in the order
/// they came, so a partition's log keeps it), while answers are written in the same order as
/// they complete: requests are pipelined as Kafka clients expect, up to [`PIPELINED`].
async fn connection<R, W>(
    mut rd: R,
    mut wr: W,
    peer: Option<std::net::SocketAddr>,
    tokens: Option<crate::auth::TokenCheck>,
    shared: &Arc<Shared>,
) -> Result<(), ConnectionEnd>
where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send,
{
    let max = shared.config.max_request_bytes();
    let mut sasl = Sasl::new(tokens);
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Pending>(PIPELINED);
    let reader = async move {
        loop {
            let size = match rd.read_i32().await {
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(e) => return Err(ConnectionEnd::from(e)),
            };
            // After a version 0 SaslHandshake the next frame is the client's bare SASL
            // message, which may be shorter than a request header.
            let least = if sasl.raw_next { 1 } else { 8 };
            if size < least || size as usize > max {
                return Err(ConnectionEnd::FrameSize { size, max });
            }
            // Grown as bytes arrive: a declared size alone reserves little.
            let mut frame = Vec::with_capacity((size as usize).min(64 * 1024));
            let got = (&mut rd).take(size as u64).read_to_end(&mut frame).await?;
            if got < size as usize {
                return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into());
            }
            let pending = if sasl.raw_next {
                sasl.raw_next = false;
                let answer = sasl.authenticate(&frame);
                // Success is an empty frame; a failure ends the connection (below).
                let empty: Pending = Box::pin(std::future::ready(Ok(
                    (answer.error_code == 0).then(|| BytesMut::from(&[0u8; 4][..]))
                )));
                empty
            } else {
                start(shared, peer, &mut sasl, Bytes::from(frame)).await?
            };
            if tx.send(pending).await.is_err() {
                // The writer stopped: its error is the connection's.
                return Ok(());
            }
            if let Some(why) = sasl.failed.take() {
                // Its answer goes out first; then the connection ends, as Kafka's does.
                return Err(ConnectionEnd::AuthenticationFailed(why));
            }
        }
    };
    let writer = async move {
        while let Some(pending) = rx.recv().await {
            if let Some(bytes) = pending.await? {
                wr.write_all(&bytes).await?;
            }
        }
        Ok::<(), ConnectionEnd>(())
    };
    // What was read before a bad frame is still answered, then the connection ends.
    let (read, written) = tokio::join!(reader, writer);
    written.and(read)
}

/// Decodes one request frame and starts serving it: what must happen in request order
/// happens here; the returned answer may complete later.
pub(crate) async fn start(
    shared: &Arc<Shared>,
    peer: Option<std::net::SocketAddr>,
    sasl: &mut Sasl,
    mut frame: Bytes,
) -> Result<Pending, ConnectionEnd> {
    let raw_key = (&frame[0..2]).get_i16();
    let version = (&frame[2..4]).get_i16();
    let api = ApiKey::try_from(raw_key).map_err(|()| ConnectionEnd::UnknownApi(raw_key))?;
    let malformed = |why: String| ConnectionEnd::Malformed { api, version, why };
    if api == ApiKey::ApiVersions && !apis::supports(api, version) {
        // Kafka's rule for a client newer than the broker: the header is read at the oldest
        // layout, and the answer is version 0 with the versions the broker has.
        let correlation_id = (&frame[4..8]).get_i32();
        let answer = encode(
            api,
            0,
            correlation_id,
            &apis::api_versions_unsupported().into(),
        );
        return Ok(Box::pin(std::future::ready(answer.map(Some))));
    }
    if api == ApiKey::Produce && (0..3).contains(&version) {
        // The codec has no Produce 0-2; each partition is refused (see `data::old_produce`).
        if !sasl.admits() {
            return Err(ConnectionEnd::Unauthenticated(api));
        }
        let header = RequestHeader::decode(&mut frame, api.request_header_version(version))
            .map_err(|e| malformed(e.to_string()))?;
        let Some(body) = data::old_produce(frame, version).map_err(malformed)? else {
            return Ok(Box::pin(std::future::ready(Ok(None))));
        };
        let mut out = BytesMut::with_capacity(body.len() + 8);
        out.put_i32((body.len() + 4) as i32);
        out.put_i32(header.correlation_id);
        out.extend_from_slice(&body);
        return Ok(Box::pin(std::future::ready(Ok(Some(out)))));
    }
    if !apis::supports(api, version) {
        // Answered with UNSUPPORTED_VERSION where the API's answer at this version has an
        // error code to carry it; otherwise no answer of the right shape exists.
        let unsupported = ConnectionEnd::Unsupported { api, version };
        let Some(refusal) = apis::refusal(api) else {
            return Err(unsupported);
        };
        let header = RequestHeader::decode(&mut frame, api.request_header_version(version))
            .map_err(|e| malformed(e.to_string()))?;
        return match encode(api, version, header.correlation_id, &refusal) {
            Ok(answer) => {
                tracing::debug!("{unsupported}: answered UNSUPPORTED_VERSION");
                Ok(Box::pin(std::future::ready(Ok(Some(answer)))))
            }
            Err(_) => Err(unsupported),
        };
    }
    let header = RequestHeader::decode(&mut frame, api.request_header_version(version))
        .map_err(|e| malformed(e.to_string()))?;
    let request =
        RequestKind::decode(api, &mut frame, version).map_err(|e| malformed(e.to_string()))?;
    if frame.has_remaining() {
        return Err(malformed(format!(
            "{} bytes left over after the request",
            frame.remaining()
        )));
    }
    let correlation_id = header.correlation_id;
    let now = |response: Result<BytesMut, ConnectionEnd>| -> Result<Pending, ConnectionEnd> {
        Ok(Box::pin(std::future::ready(response.map(Some))))
    };
    match request {
        RequestKind::SaslHandshake(r) => {
            let answer = sasl.handshake(r.mechanism.as_str(), version);
            return now(encode(api, version, correlation_id, &answer.into()));
        }
        RequestKind::SaslAuthenticate(r) => {
            let answer = sasl.authenticate(&r.auth_bytes);
            return now(encode(api, version, correlation_id, &answer.into()));
        }
        RequestKind::ApiVersions(_) => {}
        _ if !sasl.admits() => return Err(ConnectionEnd::Unauthenticated(api)),
        _ => {}
    }
    let client = groups::Client {
        id: header.client_id,
        peer,
    };
    match apis::serve(shared, &client, request, version).await {
        apis::Served::Now(response) => {
            let answer = encode(api, version, correlation_id, &response);
            Ok(Box::pin(std::future::ready(answer.map(Some))))
        }
        apis::Served::Later(later) => Ok(Box::pin(async move {
            match later.await {
                Some(response) => encode(api, version, correlation_id, &response).map(Some),
                None => Ok(None),
            }
        })),
        apis::Served::Unsupported => Err(ConnectionEnd::Unsupported { api, version }),
    }
}

/// One answer's bytes: size, header, body.
fn encode(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    response: &kafka_protocol::messages::ResponseKind,
) -> Result<BytesMut, ConnectionEnd> {
    let encode_err = |e: anyhow::Error| ConnectionEnd::Encode {
        api,
        version,
        why: e.to_string(),
    };
    let mut out = BytesMut::with_capacity(256);
    out.put_i32(0);
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut out, api.response_header_version(version))
        .map_err(encode_err)?;
    response.encode(&mut out, version).map_err(encode_err)?;
    let size = (out.len() - 4) as i32;
    out[..4].copy_from_slice(&size.to_be_bytes());
    Ok(out)
}
