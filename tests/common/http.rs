//! A raw HTTP/1.1 client, so that tests control every byte they send:
//! repeated or non-UTF-8 headers, chunked bodies, truncated bodies.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Maximum wait for a whole response.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct RawRequest {
    pub method: String,
    pub path: String,
    /// Header lines other than Host, Connection and the body framing.
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
    /// Sends the body with `Transfer-Encoding: chunked` instead of
    /// `Content-Length`.
    pub chunked: bool,
}

impl RawRequest {
    pub fn post(path: &str, content_type: Option<&str>, body: impl Into<Vec<u8>>) -> RawRequest {
        let headers = content_type
            .map(|value| vec![("Content-Type".to_owned(), value.as_bytes().to_vec())])
            .unwrap_or_default();
        RawRequest {
            method: "POST".to_owned(),
            path: path.to_owned(),
            headers,
            body: body.into(),
            chunked: false,
        }
    }

    pub fn get(path: &str) -> RawRequest {
        RawRequest {
            method: "GET".to_owned(),
            path: path.to_owned(),
            headers: Vec::new(),
            body: Vec::new(),
            chunked: false,
        }
    }

    /// Returns `POST /auth/login` with a JSON body of `signal_id` and
    /// `token`.
    pub fn login_json(signal_id: &str, token: &str) -> RawRequest {
        let body = serde_json::json!({ "signalId": signal_id, "signalToken": token }).to_string();
        RawRequest::post("/auth/login", Some("application/json"), body)
    }

    /// Returns `GET /auth/session` with `jwt` as a bearer token.
    pub fn session(jwt: &str) -> RawRequest {
        let mut request = RawRequest::get("/auth/session");
        request.headers.push((
            "Authorization".to_owned(),
            format!("Bearer {jwt}").into_bytes(),
        ));
        request
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = format!(
            "{} {} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n",
            self.method, self.path
        )
        .into_bytes();
        for (name, value) in &self.headers {
            bytes.extend_from_slice(name.as_bytes());
            bytes.extend_from_slice(b": ");
            bytes.extend_from_slice(value);
            bytes.extend_from_slice(b"\r\n");
        }
        if self.chunked {
            bytes.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
            for chunk in self.body.chunks(1024) {
                bytes.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                bytes.extend_from_slice(chunk);
                bytes.extend_from_slice(b"\r\n");
            }
            bytes.extend_from_slice(b"0\r\n\r\n");
        } else {
            bytes.extend_from_slice(
                format!("Content-Length: {}\r\n\r\n", self.body.len()).as_bytes(),
            );
            bytes.extend_from_slice(&self.body);
        }
        bytes
    }
}

#[derive(Debug, Clone)]
pub struct RawResponse {
    pub status: u16,
    /// Header names in lower case, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|error| {
            panic!(
                "response body is not JSON ({error}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// Sends `request` on a new connection and reads the response until the
/// server closes it. Panics when no complete response arrives: a dropped
/// connection is a failure in every test that uses this.
pub async fn send(address: SocketAddr, request: &RawRequest) -> RawResponse {
    send_bytes(address, &request.to_bytes()).await
}

/// Sends `bytes` as they are on a new connection, then reads as `send` does.
pub async fn send_bytes(address: SocketAddr, bytes: &[u8]) -> RawResponse {
    send_bytes_from(None, address, bytes).await
}

/// Sends `request` from the loopback address `source`, such as 127.0.0.2,
/// so that a test can act as several clients.
pub async fn send_from(source: IpAddr, address: SocketAddr, request: &RawRequest) -> RawResponse {
    send_bytes_from(Some(source), address, &request.to_bytes()).await
}

/// Opens a connection from `source`, or from any address when `None`.
pub async fn connect_from(source: Option<IpAddr>, address: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    if let Some(source) = source {
        socket
            .bind(SocketAddr::new(source, 0))
            .expect("bind the source address");
    }
    socket.connect(address).await.expect("connect")
}

async fn send_bytes_from(source: Option<IpAddr>, address: SocketAddr, bytes: &[u8]) -> RawResponse {
    let bytes = bytes.to_vec();
    let exchange = async {
        let stream = connect_from(source, address).await;
        let (mut reader, mut writer) = stream.into_split();
        // Write and read at once: a server may respond (413, 415) and
        // close before it has read the whole body, and the response still counts.
        let write = async move {
            let _ = writer.write_all(&bytes).await;
            let _ = writer.flush().await;
            writer
        };
        let read = async move {
            let mut received = Vec::new();
            let mut buffer = [0u8; 8192];
            loop {
                match reader.read(&mut buffer).await {
                    Ok(0) | Err(_) => break,
                    Ok(count) => received.extend_from_slice(&buffer[..count]),
                }
            }
            received
        };
        let (_writer, received) = tokio::join!(write, read);
        received
    };
    let received = tokio::time::timeout(RESPONSE_TIMEOUT, exchange)
        .await
        .expect("the server did not answer within 10 s");
    parse_response(&received).unwrap_or_else(|| {
        panic!(
            "no complete HTTP response (connection dropped?): {:?}",
            String::from_utf8_lossy(&received)
        )
    })
}

pub fn parse_response(received: &[u8]) -> Option<RawResponse> {
    let head_end = received
        .windows(4)
        .position(|window| window == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&received[..head_end]).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();

    let rest = &received[head_end + 4..];
    let chunked = headers
        .iter()
        .any(|(name, value)| name == "transfer-encoding" && value.contains("chunked"));
    let body = if chunked {
        decode_chunked(rest)?
    } else {
        let length = headers
            .iter()
            .find(|(name, _)| name == "content-length")
            .and_then(|(_, value)| value.parse::<usize>().ok())
            .unwrap_or(rest.len());
        rest.get(..length)?.to_vec()
    };
    Some(RawResponse {
        status,
        headers,
        body,
    })
}

fn decode_chunked(mut rest: &[u8]) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = rest.windows(2).position(|window| window == b"\r\n")?;
        let size =
            usize::from_str_radix(std::str::from_utf8(&rest[..line_end]).ok()?.trim(), 16).ok()?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Some(body);
        }
        body.extend_from_slice(rest.get(..size)?);
        rest = rest.get(size + 2..)?;
    }
}
