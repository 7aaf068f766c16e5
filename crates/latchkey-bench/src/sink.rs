//! An SMTP sink that accepts every message and only counts them.
//!
//! `latchkey_mail::sink::SmtpSink` keeps every message and clones the whole list on each look,
//! which is right for tests that read a few e-mails and far too heavy for tens of thousands of
//! them; this one keeps a counter and the time of the last arrival.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

struct Counters {
    started: Instant,
    received: AtomicU64,
    /// Microseconds from `started` to the last message's end of data.
    last_at_us: AtomicU64,
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
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).await? == 0 {
            return Ok(());
        }
        let verb: Vec<u8> =
            line.iter().take_while(|b| b.is_ascii_alphabetic()).map(|b| b.to_ascii_uppercase()).collect();
        let reply: &[u8] = match verb.as_slice() {
            b"EHLO" => b"250-latchkey-bench-sink\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n",
            b"HELO" | b"NOOP" | b"RSET" | b"MAIL" | b"RCPT" => b"250 OK\r\n",
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
                b"250 OK: queued\r\n"
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
}
