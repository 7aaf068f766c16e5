//! An SMTP sink that accepts every message and only counts them.
//!
//! `latchkey_mail::sink::SmtpSink` keeps every message and clones the whole list on each look,
//! which is right for tests that read a few e-mails and far too heavy for tens of thousands of
//! them; this one keeps a counter, the time of the last arrival, and (for the addresses the
//! bench registered with [`CountingSink::expect`]) the time from the request to its `250`.

use hdrhistogram::Histogram;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

struct Counters {
    started: Instant,
    received: AtomicU64,
    /// Microseconds from `started` to the last message's end of data.
    last_at_us: AtomicU64,
    /// When the bench sent the request for each recipient still awaited.
    awaited: Mutex<HashMap<String, Instant>>,
    /// Microseconds from a registered request's start to the `250` for its message.
    request_to_accept: Mutex<Histogram<u64>>,
}

/// Registers the requests whose messages the sink times, from the request to the `250`.
#[derive(Clone)]
pub struct Expectations(Arc<Counters>);

impl Expectations {
    /// Records that a request which queues a message for `recipient` started at `started`.
    pub fn expect(&self, recipient: &str, started: Instant) {
        self.0.awaited.lock().expect("awaited lock").insert(recipient.to_ascii_lowercase(), started);
    }
}

pub struct CountingSink {
    addr: std::net::SocketAddr,
    counters: Arc<Counters>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for CountingSink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl CountingSink {
    pub async fn start() -> std::io::Result<Self> {
        Self::start_on(0).await
    }

    /// Listens on this loopback port (0: any free one).
    pub async fn start_on(port: u16) -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", port)).await?;
        let addr = listener.local_addr()?;
        let counters = Arc::new(Counters {
            started: Instant::now(),
            received: AtomicU64::new(0),
            last_at_us: AtomicU64::new(0),
            awaited: Mutex::new(HashMap::new()),
            request_to_accept: Mutex::new(new_histogram()),
        });
        let shared = counters.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(session(stream, shared.clone()));
            }
        });
        Ok(Self { addr, counters, task })
    }

    /// What to give the server as `LATCHKEY_SMTP_URL`.
    pub fn url(&self) -> String {
        format!("smtp+plain://{}", self.addr)
    }

    pub fn received(&self) -> u64 {
        self.counters.received.load(Ordering::Acquire)
    }

    /// When the last message arrived.
    pub fn last_arrival(&self) -> Instant {
        self.counters.started + Duration::from_micros(self.counters.last_at_us.load(Ordering::Acquire))
    }

    /// A handle the workers use to say which messages they are about to queue.
    pub fn expectations(&self) -> Expectations {
        Expectations(self.counters.clone())
    }

    #[cfg(test)]
    fn expect(&self, recipient: &str, started: Instant) {
        self.expectations().expect(recipient, started);
    }

    /// The times from request to `250` recorded so far, and starts afresh.
    pub fn take_request_to_accept(&self) -> Histogram<u64> {
        self.counters.awaited.lock().expect("awaited lock").clear();
        std::mem::replace(
            &mut *self.counters.request_to_accept.lock().expect("histogram lock"),
            new_histogram(),
        )
    }

    /// Waits until `count` messages in all have arrived, or `timeout` passed; polls cheaply.
    pub async fn wait_for(&self, count: u64, timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        loop {
            let received = self.received();
            if received >= count || Instant::now() >= deadline {
                return received;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

async fn session(stream: TcpStream, counters: Arc<Counters>) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    write.write_all(b"220 latchkey-bench-sink ESMTP\r\n").await?;
    let mut line = Vec::with_capacity(1024);
    let mut recipients: Vec<String> = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).await? == 0 {
            return Ok(());
        }
        let verb: Vec<u8> =
            line.iter().take_while(|b| b.is_ascii_alphabetic()).map(|b| b.to_ascii_uppercase()).collect();
        let reply: &[u8] = match verb.as_slice() {
            b"EHLO" => b"250-latchkey-bench-sink\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n",
            b"RCPT" => {
                if let Some(address) = angle_address(&line) {
                    recipients.push(address);
                }
                b"250 OK\r\n"
            }
            b"RSET" | b"MAIL" => {
                recipients.clear();
                b"250 OK\r\n"
            }
            b"HELO" | b"NOOP" => b"250 OK\r\n",
            b"DATA" => {
                write.write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n").await?;
                loop {
                    line.clear();
                    if reader.read_until(b'\n', &mut line).await? == 0 {
                        return Ok(());
                    }
                    if line == b".\r\n" || line == b".\n" {
                        break;
                    }
                }
                let at = counters.started.elapsed().as_micros() as u64;
                counters.last_at_us.fetch_max(at, Ordering::AcqRel);
                counters.received.fetch_add(1, Ordering::AcqRel);
                write.write_all(b"250 OK: queued\r\n").await?;
                counters.accepted(&mut recipients);
                continue;
            }
            b"QUIT" => {
                write.write_all(b"221 Bye\r\n").await?;
                return Ok(());
            }
            _ => b"502 command not implemented\r\n",
        };
        write.write_all(reply).await?;
    }
}

impl Counters {
    /// The `250` for these recipients' message has just been written.
    fn accepted(&self, recipients: &mut Vec<String>) {
        let now = Instant::now();
        let mut awaited = self.awaited.lock().expect("awaited lock");
        let started: Vec<Instant> = recipients.drain(..).filter_map(|r| awaited.remove(&r)).collect();
        drop(awaited);
        if started.is_empty() {
            return;
        }
        let mut histogram = self.request_to_accept.lock().expect("histogram lock");
        for at in started {
            let _ = histogram.record(now.duration_since(at).as_micros().max(1) as u64);
        }
    }
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("histogram bounds")
}

/// `alice@example.com` from `RCPT TO:<Alice@Example.com> …`, lowercased.
fn angle_address(line: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(line).ok()?;
    let start = text.find('<')? + 1;
    let end = start + text[start..].find('>')?;
    Some(text[start..end].to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn counts_a_message() {
        let sink = CountingSink::start().await.unwrap();
        let stream = TcpStream::connect(sink.addr).await.unwrap();
        let (read, mut write) = stream.into_split();
        let mut reader = BufReader::new(read);
        let mut line = String::new();
        reader.read_line(&mut line).await.unwrap();
        assert!(line.starts_with("220"));
        write
            .write_all(b"HELO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nSubject: hi\r\n\r\nbody\r\n.\r\nQUIT\r\n")
            .await
            .unwrap();
        let mut rest = String::new();
        while reader.read_line(&mut rest).await.unwrap() > 0 {}
        assert!(rest.contains("250 OK: queued"), "{rest}");
        assert_eq!(sink.wait_for(1, Duration::from_secs(1)).await, 1);
    }

    #[tokio::test]
    async fn times_a_registered_recipient_from_request_to_acceptance() {
        let sink = CountingSink::start().await.unwrap();
        sink.expect("Who@Example.com", Instant::now());
        let stream = TcpStream::connect(sink.addr).await.unwrap();
        let (read, mut write) = stream.into_split();
        let mut reader = BufReader::new(read);
        write
            .write_all(
                b"EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<who@example.com>\r\nDATA\r\nbody\r\n.\r\nQUIT\r\n",
            )
            .await
            .unwrap();
        let mut rest = String::new();
        while reader.read_line(&mut rest).await.unwrap() > 0 {}
        let histogram = sink.take_request_to_accept();
        assert_eq!(histogram.len(), 1, "{rest}");
        assert_eq!(sink.take_request_to_accept().len(), 0);
    }
}
