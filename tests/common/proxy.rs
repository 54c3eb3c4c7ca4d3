//! A loopback HTTP proxy between the CLI and moto that counts AWS calls and injects
//! faults: throttling with each protocol's real error (query XML `Throttling`, JSON
//! `ThrottlingException`, S3 `SlowDown`, EC2 `RequestLimitExceeded`) and HTTP 500s.
//! One request per connection; the proxy answers `Connection: close`. Faults are drawn
//! from a seeded generator, so a run is reproducible.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Clone, Copy, Default)]
pub struct Faults {
    /// Share of requests answered with a throttling error.
    pub throttle: f64,
    /// Share of requests answered with HTTP 500.
    pub server_error: f64,
}

#[derive(Default)]
struct State {
    /// `service:Action` → requests forwarded to moto.
    forwarded: BTreeMap<String, usize>,
    injected: usize,
    rng: u64,
}

pub struct Proxy {
    pub port: u16,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    pub fn start(upstream: u16, faults: Faults) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("proxy port");
        let port = listener.local_addr().expect("addr").port();
        let state = Arc::new(Mutex::new(State {
            rng: 0x9E37_79B9_7F4A_7C15,
            ..State::default()
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (state.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if sp.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let st = st.clone();
                std::thread::spawn(move || {
                    let _ = handle(conn, upstream, faults, &st);
                });
            }
        });
        Proxy { port, state, stop }
    }

    /// `http://localhost:PORT`, for AWS_ENDPOINT_URL.
    pub fn endpoint(&self) -> String {
        format!("http://localhost:{}", self.port)
    }

    /// Calls forwarded to the emulator, by `service:Action`, and resets the count.
    pub fn take_counts(&self) -> (BTreeMap<String, usize>, usize) {
        let mut s = self.state.lock().expect("proxy state");
        let out = (std::mem::take(&mut s.forwarded), s.injected);
        s.injected = 0;
        out
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn next(rng: &mut u64) -> f64 {
    *rng ^= *rng << 13;
    *rng ^= *rng >> 7;
    *rng ^= *rng << 17;
    (*rng >> 11) as f64 / (1u64 << 53) as f64
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then_some(v.trim())
    })
}

/// `service:Action`, from the SigV4 scope and the request.
fn classify(head: &str, body: &[u8]) -> (String, String) {
    let auth = header(head, "authorization").unwrap_or_default();
    let service = auth
        .split("Credential=")
        .nth(1)
        .and_then(|c| c.split('/').nth(3))
        .unwrap_or("unknown")
        .to_string();
    let mut first = head.lines().next().unwrap_or_default().split_whitespace();
    let (method, target) = (
        first.next().unwrap_or_default(),
        first.next().unwrap_or_default(),
    );
    let action = if let Some(t) = header(head, "x-amz-target") {
        t.rsplit('.').next().unwrap_or(t).to_string()
    } else if let Some(a) = String::from_utf8_lossy(body)
        .split('&')
        .find_map(|kv| kv.strip_prefix("Action=").map(str::to_string))
    {
        a
    } else if service == "s3" {
        let q = target.split_once('?').map(|(_, q)| q).unwrap_or_default();
        match method {
            "GET" if q.contains("list-type=2") => "ListObjectsV2".into(),
            "POST" if q.contains("delete") => "DeleteObjects".into(),
            m => format!("{m}Object"),
        }
    } else {
        method.to_string()
    };
    (service, action)
}

fn fault_response(service: &str, json: bool, throttle: bool) -> Vec<u8> {
    let (status, ctype, body) = match (service, json, throttle) {
        ("s3", _, true) => ("503 Slow Down", "application/xml", "<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>".to_string()),
        ("s3", _, false) => ("500 Internal Server Error", "application/xml", "<Error><Code>InternalError</Code><Message>We encountered an internal error.</Message></Error>".to_string()),
        (_, true, true) => ("400 Bad Request", "application/x-amz-json-1.1", r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#.to_string()),
        (_, true, false) => ("500 Internal Server Error", "application/x-amz-json-1.1", r#"{"__type":"InternalFailure","message":"injected"}"#.to_string()),
        ("ec2", _, t) => (
            if t { "503 Service Unavailable" } else { "500 Internal Server Error" },
            "text/xml",
            format!("<Response><Errors><Error><Code>{}</Code><Message>injected</Message></Error></Errors><RequestID>1</RequestID></Response>", if t { "RequestLimitExceeded" } else { "InternalError" }),
        ),
        (_, _, t) => (
            if t { "400 Bad Request" } else { "500 Internal Server Error" },
            "text/xml",
            format!(
                "<ErrorResponse><Error><Type>{}</Type><Code>{}</Code><Message>injected</Message></Error><RequestId>1</RequestId></ErrorResponse>",
                if t { "Sender" } else { "Receiver" },
                if t { "Throttling" } else { "InternalFailure" }
            ),
        ),
    };
    format!("HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).into_bytes()
}

fn handle(
    conn: TcpStream,
    upstream: u16,
    faults: Faults,
    state: &Mutex<State>,
) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let end = line == "\r\n";
        head.push_str(&line);
        if end {
            break;
        }
    }
    let mut body = Vec::new();
    if let Some(n) = header(&head, "content-length").and_then(|v| v.parse::<usize>().ok()) {
        body.resize(n, 0);
        reader.read_exact(&mut body)?;
    } else if header(&head, "transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size)?;
            body.extend_from_slice(size.as_bytes());
            let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16)
                .unwrap_or(0);
            let mut chunk = vec![0; n + 2];
            reader.read_exact(&mut chunk)?;
            body.extend_from_slice(&chunk);
            if n == 0 {
                break;
            }
        }
    }
    let (service, action) = classify(&head, &body);
    let json = header(&head, "x-amz-target").is_some();
    let fault = {
        let mut s = state.lock().expect("proxy state");
        let r = next(&mut s.rng);
        let f = if r < faults.throttle {
            Some(true)
        } else if r < faults.throttle + faults.server_error {
            Some(false)
        } else {
            None
        };
        match f {
            Some(_) => s.injected += 1,
            None => {
                *s.forwarded
                    .entry(format!("{service}:{action}"))
                    .or_default() += 1
            }
        }
        f
    };
    let mut client = conn;
    if let Some(throttle) = fault {
        client.write_all(&fault_response(&service, json, throttle))?;
        return Ok(());
    }
    // Forward with Connection: close, then relay the whole response.
    let mut up = TcpStream::connect(("127.0.0.1", upstream))?;
    let mut out = String::new();
    for (i, l) in head.split("\r\n").enumerate() {
        if l.is_empty() || l.to_ascii_lowercase().starts_with("connection:") {
            continue;
        }
        out.push_str(l);
        out.push_str("\r\n");
        if i == 0 {
            out.push_str("Connection: close\r\n");
        }
    }
    out.push_str("\r\n");
    up.write_all(out.as_bytes())?;
    up.write_all(&body)?;
    let mut resp = Vec::new();
    up.read_to_end(&mut resp)?;
    let text_end = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(resp.len());
    let head_text = String::from_utf8_lossy(&resp[..text_end]).to_string();
    let mut fixed = String::new();
    for (i, l) in head_text.split("\r\n").enumerate() {
        if l.to_ascii_lowercase().starts_with("connection:") {
            continue;
        }
        fixed.push_str(l);
        fixed.push_str("\r\n");
        if i == 0 {
            fixed.push_str("Connection: close\r\n");
        }
    }
    client.write_all(fixed.as_bytes())?;
    let rest = &resp[text_end.min(resp.len())..];
    client.write_all(rest.strip_prefix(b"\r\n").unwrap_or(rest))?;
    Ok(())
}
