//! Just enough HTTP/1.1 to test the node's API from outside: one request per connection
//! (`Connection: close`), JSON bodies, and server-sent event streams read line by line.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long a request may take.
const DEADLINE: Duration = Duration::from_secs(30);

/// A response: status, headers (names lower-cased) and body.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The body as JSON (`Null` if it is not).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// The API of the node whose page is at `url` (`http://127.0.0.1:PORT/`).
#[derive(Clone, Debug)]
pub struct Api {
    pub address: SocketAddr,
}

impl Api {
    pub fn new(url: &str) -> Api {
        let authority = url
            .strip_prefix("http://")
            .and_then(|rest| rest.split('/').next())
            .expect("an http:// url");
        Api {
            address: authority.parse().expect("an IP address and port"),
        }
    }

    fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect_timeout(&self.address, DEADLINE).expect("connect");
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        stream
    }

    /// Sends `head` (request line and headers, without the final blank line) and `body`.
    pub fn raw(&self, head: &str, body: &[u8]) -> Response {
        let mut stream = self.connect();
        let request = format!(
            "{head}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        stream.write_all(request.as_bytes()).unwrap();
        // The server may answer (413) before reading all of a body it refuses.
        let _ = stream.write_all(body);
        let mut bytes = Vec::new();
        let _ = stream.read_to_end(&mut bytes);
        parse(&bytes)
    }

    /// A request with the right `Host`, and a JSON body if `body` is given.
    pub fn request(&self, method: &str, path: &str, body: Option<&Value>) -> Response {
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {}", self.address);
        let body = match body {
            Some(value) => {
                head.push_str("\r\nContent-Type: application/json");
                serde_json::to_vec(value).unwrap()
            }
            None => Vec::new(),
        };
        self.raw(&head, &body)
    }

    pub fn get(&self, path: &str) -> Response {
        self.request("GET", path, None)
    }

    pub fn post(&self, path: &str, body: &Value) -> Response {
        self.request("POST", path, Some(body))
    }

    pub fn delete(&self, path: &str) -> Response {
        self.request("DELETE", path, None)
    }

    /// Opens the event stream at `path`, resuming after `last_event_id` if given.
    pub fn events(&self, path: &str, last_event_id: Option<u64>) -> EventStream {
        let mut stream = self.connect();
        let resume = last_event_id
            .map(|id| format!("Last-Event-ID: {id}\r\n"))
            .unwrap_or_default();
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\n{resume}\r\n",
            self.address
        );
        stream.write_all(request.as_bytes()).unwrap();
        let mut reader = BufReader::new(stream);
        let mut status_line = String::new();
        reader.read_line(&mut status_line).unwrap();
        assert!(
            status_line.contains(" 200 "),
            "event stream {path}: {status_line}"
        );
        // Headers, up to the blank line; the body is chunked.
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line.trim().is_empty() {
                break;
            }
        }
        EventStream { reader }
    }
}

/// One server-sent event.
#[derive(Debug, Clone)]
pub struct Event {
    pub name: String,
    pub id: Option<u64>,
    pub data: Value,
}

/// An open event stream.
pub struct EventStream {
    reader: BufReader<TcpStream>,
}

impl EventStream {
    /// The next event, or `None` when the stream ends; panics after `deadline`.
    pub fn next(&mut self, deadline: Duration) -> Option<Event> {
        let give_up = Instant::now() + deadline;
        let (mut name, mut id, mut data) = (String::from("message"), None, String::new());
        loop {
            let left = give_up.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "no event within {deadline:?}");
            self.reader.get_ref().set_read_timeout(Some(left)).unwrap();
            let mut line = String::new();
            match self.reader.read_line(&mut line) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(e) => panic!("reading the event stream: {e}"),
            }
            let line = line.trim_end_matches(['\r', '\n']);
            // Chunk sizes and the chunked body's end interleave with the event lines.
            if line.is_empty() {
                if !data.is_empty() {
                    return Some(Event {
                        name,
                        id,
                        data: serde_json::from_str(&data).unwrap_or(Value::Null),
                    });
                }
            } else if let Some(value) = line.strip_prefix("event:") {
                name = value.trim().to_owned();
            } else if let Some(value) = line.strip_prefix("id:") {
                id = value.trim().parse().ok();
            } else if let Some(value) = line.strip_prefix("data:") {
                data.push_str(value.trim_start());
            } else if line == "0" && data.is_empty() {
                // The last chunk: the stream ended.
                return None;
            }
        }
    }

    /// Events until one named `name` (returned with those before it), or panics.
    pub fn until(&mut self, name: &str, deadline: Duration) -> Vec<Event> {
        let give_up = Instant::now() + deadline;
        let mut seen = Vec::new();
        loop {
            let left = give_up.saturating_duration_since(Instant::now());
            match self.next(left) {
                Some(event) => {
                    let done = event.name == name;
                    seen.push(event);
                    if done {
                        return seen;
                    }
                }
                None => panic!(
                    "the stream ended before {name}: {:?}",
                    seen.iter().map(|e| &e.name).collect::<Vec<_>>()
                ),
            }
        }
    }
}

/// Parses a whole response read until the connection closed.
fn parse(bytes: &[u8]) -> Response {
    let split = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP response: {:?}", String::from_utf8_lossy(bytes)));
    let head = String::from_utf8_lossy(&bytes[..split]);
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let raw = &bytes[split + 4..];
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked { unchunk(raw) } else { raw.to_vec() };
    Response {
        status,
        headers,
        body,
    }
}

fn unchunk(mut raw: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    while let Some(end) = raw.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&raw[..end]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = end + 2;
        body.extend_from_slice(&raw[start..(start + size).min(raw.len())]);
        raw = &raw[(start + size + 2).min(raw.len())..];
    }
    body
}
