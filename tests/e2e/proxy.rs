//! A TCP proxy that forwards each request to the server and, for the first, drops the
//! response: the server did the work, the client never hears of it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub struct DroppingProxy {
    pub base: String,
    pub requests: Arc<AtomicUsize>,
}

impl DroppingProxy {
    /// Forwards to `upstream` (`host:port`); loses the answers of the first `drop_first` requests.
    pub async fn start(upstream: String, drop_first: usize) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(AtomicUsize::new(0));
        let counter = requests.clone();
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let (upstream, counter) = (upstream.clone(), counter.clone());
                tokio::spawn(async move {
                    let _ = relay(client, &upstream, counter, drop_first).await;
                });
            }
        });
        Self { base, requests }
    }
}

/// One request per connection: read it, forward it with `Connection: close`, read the whole
/// answer, then pass it on, or close without a word.
async fn relay(
    mut client: TcpStream,
    upstream: &str,
    counter: Arc<AtomicUsize>,
    drop_first: usize,
) -> std::io::Result<()> {
    let request = read_request(&mut client).await?;
    let number = counter.fetch_add(1, Ordering::SeqCst);
    let head_end = request.windows(2).position(|w| w == b"\r\n").unwrap_or(0) + 2;
    let mut forwarded = request[..head_end].to_vec();
    forwarded.extend_from_slice(b"Connection: close\r\n");
    forwarded.extend_from_slice(&request[head_end..]);
    let mut server = TcpStream::connect(upstream).await?;
    server.write_all(&forwarded).await?;
    let mut answer = Vec::new();
    server.read_to_end(&mut answer).await?;
    if number < drop_first {
        return Ok(()); // `client` drops here: the connection closes with no answer.
    }
    client.write_all(&answer).await?;
    client.shutdown().await
}

async fn read_request(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut buffer = Vec::new();
    let mut chunk = [0_u8; 8192];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(buffer);
        }
        buffer.extend_from_slice(&chunk[..n]);
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buffer[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if buffer.len() >= end + 4 + length {
                return Ok(buffer);
            }
        }
    }
}
