//! `FakeFailingCerbos`: a tiny HTTP server that answers like Cerbos after injected faults.
//!
//! Only for faults a real Cerbos cannot be made to show on demand (a 500, a hang). Everything else is
//! tested against the real PDP (see [`super::cerbos`]).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// What the fake does with one request.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Fault {
    /// Answer `500 Internal Server Error`.
    Status500,
    /// Answer `400 Bad Request` (a rejection).
    Status400,
    /// Answer nothing for this long (then close the connection).
    Hang(Duration),
}

/// The fake server: the `n`th request other than a policy read (`GET /admin/policy`, which the push worker
/// makes before every write to leave foreign policies alone) gets the `n`th fault, later ones a normal answer
/// (every action of a check is allowed; admin writes succeed; reads find no policy).
pub(crate) struct FakeFailingCerbos {
    addr: std::net::SocketAddr,
    requests: Arc<Mutex<Vec<String>>>,
    task: JoinHandle<()>,
}

impl FakeFailingCerbos {
    /// Starts the fake on a free loopback port.
    pub(crate) async fn start(faults: Vec<Fault>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the fake Cerbos");
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let counter = Arc::new(AtomicUsize::new(0));
        let faults = Arc::new(faults);
        let log = requests.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (log, counter, faults) = (log.clone(), counter.clone(), faults.clone());
                tokio::spawn(async move {
                    let _ = serve(stream, &log, &counter, &faults).await;
                });
            }
        });
        FakeFailingCerbos { addr, requests, task }
    }

    /// The fake's base URL.
    pub(crate) fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The requests received so far, as `METHOD /path`.
    pub(crate) fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for FakeFailingCerbos {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves one request on `stream` (the answer closes the connection).
async fn serve(
    mut stream: TcpStream,
    log: &Mutex<Vec<String>>,
    counter: &AtomicUsize,
    faults: &[Fault],
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let head_end = loop {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap_or(0))
        })
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body: Value = serde_json::from_slice(&buf[head_end..]).unwrap_or(Value::Null);
    let mut first = head.lines().next().unwrap_or_default().split_whitespace();
    let (method, target) = (
        first.next().unwrap_or_default().to_owned(),
        first.next().unwrap_or_default().to_owned(),
    );
    let path = target.split('?').next().unwrap_or_default().to_owned();
    log.lock().unwrap().push(format!("{method} {path}"));

    let read = method == "GET" && path == "/admin/policy";
    let fault = if read {
        None
    } else {
        faults.get(counter.fetch_add(1, Ordering::SeqCst))
    };
    let (status, answer) = match fault {
        Some(Fault::Hang(d)) => {
            tokio::time::sleep(*d).await;
            return Ok(());
        }
        Some(Fault::Status400) => ("400 Bad Request", json!({"code": 3, "message": "injected rejection"})),
        Some(Fault::Status500) => (
            "500 Internal Server Error",
            json!({"code": 13, "message": "injected fault"}),
        ),
        None if path == "/api/check/resources" => ("200 OK", allow_everything(&body)),
        None => ("200 OK", json!({"success": {}})),
    };
    let answer = answer.to_string();
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
        answer.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

/// A check answer allowing every action asked about.
fn allow_everything(request: &Value) -> Value {
    let results: Vec<Value> = request["resources"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|entry| {
            let actions: serde_json::Map<String, Value> = entry["actions"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .filter_map(Value::as_str)
                .map(|a| (a.to_owned(), json!("EFFECT_ALLOW")))
                .collect();
            json!({ "resource": { "id": entry["resource"]["id"], "kind": entry["resource"]["kind"] }, "actions": actions })
        })
        .collect();
    json!({ "results": results })
}
