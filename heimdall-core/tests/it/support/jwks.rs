//! A JWKS server on loopback for the identity tests: serves a key set, counts the fetches, and can be made
//! to fail (answer 503) to show what happens while the identity provider is down.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub(crate) struct JwksServer {
    addr: std::net::SocketAddr,
    body: Arc<Mutex<String>>,
    fetches: Arc<AtomicUsize>,
    down: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

impl JwksServer {
    pub(crate) async fn start(body: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the JWKS server");
        let addr = listener.local_addr().unwrap();
        let body = Arc::new(Mutex::new(body.to_owned()));
        let fetches = Arc::new(AtomicUsize::new(0));
        let down = Arc::new(AtomicBool::new(false));
        let (b, f, d) = (body.clone(), fetches.clone(), down.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let (b, f, d) = (b.clone(), f.clone(), d.clone());
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 4096];
                    let _ = stream.read(&mut buf).await;
                    f.fetch_add(1, Ordering::SeqCst);
                    let (status, text) = if d.load(Ordering::SeqCst) {
                        ("503 Service Unavailable", String::new())
                    } else {
                        ("200 OK", b.lock().unwrap().clone())
                    };
                    let response = format!(
                        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
                        text.len()
                    );
                    let _ = stream.write_all(response.as_bytes()).await;
                });
            }
        });
        JwksServer {
            addr,
            body,
            fetches,
            down,
            task,
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}/realms/test/protocol/openid-connect/certs", self.addr)
    }

    pub(crate) fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }

    pub(crate) fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    pub(crate) fn set_body(&self, body: &str) {
        *self.body.lock().unwrap() = body.to_owned();
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
