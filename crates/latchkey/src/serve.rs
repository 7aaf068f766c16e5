//! The HTTP listener: accepting connections and serving the router on them, with bounds on
//! what a slow or idle client can hold.
//!
//! `axum::serve` sets no timer: a client that never finishes its headers, or stops in the
//! middle of a body, held its socket for as long as it liked, and about a thousand of them
//! exhausted the descriptors. Here every connection is bounded:
//!
//! - the head of each request must arrive within `header_timeout`, counted from when the
//!   connection starts waiting for it: on a kept-alive connection, that also bounds the idle
//!   time between two requests;
//! - the whole body must arrive within `body_timeout` of the head; a handler reading it
//!   past that gets an error, and the connection is closed;
//! - at most `max_connections` are open at once: at the limit, new ones wait in the kernel's
//!   backlog until one closes;
//! - an accept error (out of descriptors, for instance) does not stop the loop: it waits a
//!   little and tries again, and logs the first error of a burst, then at most one line every
//!   ten seconds while it lasts.
//!
//! Graceful shutdown: stop accepting, let requests in flight finish, close idle connections.

use axum::Router;
use axum::body::Bytes;
use axum::extract::ConnectInfo;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::{Instant, Sleep};
use tower::ServiceExt as _;

/// How long to wait before accepting again after an accept error.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// At most one log line of accept errors this often.
const ACCEPT_LOG_EVERY: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// For the head of a request, and for the next one on an idle kept-alive connection.
    pub header_timeout: Duration,
    /// For the whole body of a request, from its head.
    pub body_timeout: Duration,
    /// Open connections at once.
    pub max_connections: usize,
}

/// Serves `router` on `listener` until `shutdown` completes, then finishes the requests in
/// flight. Handlers see the peer's address as `ConnectInfo<SocketAddr>`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
    shutdown: impl Future<Output = ()>,
) {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout).keep_alive(true);
    tokio::pin!(shutdown);
    let mut at_limit = false;
    // Accept errors come in bursts (one per try while out of descriptors): log the first,
    // then at most one every ACCEPT_LOG_EVERY, with how many were not logged.
    let mut failing = false;
    let mut last_logged: Option<Instant> = None;
    let mut unlogged: u64 = 0;
    loop {
        let permit = match permits.clone().try_acquire_owned() {
            Ok(permit) => {
                at_limit = false;
                permit
            }
            Err(_) => {
                if !at_limit {
                    tracing::warn!(
                        max_connections = limits.max_connections,
                        "at the connection limit: new connections wait until one closes"
                    );
                    at_limit = true;
                }
                tokio::select! {
                    biased;
                    () = &mut shutdown => break,
                    permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
                }
            }
        };
        let accepted = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => {
                if failing {
                    tracing::info!("accepting connections again");
                    failing = false;
                }
                accepted
            }
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                failing = true;
                if last_logged.is_none_or(|at| at.elapsed() >= ACCEPT_LOG_EVERY) {
                    tracing::error!(
                        error = %e,
                        not_logged = unlogged,
                        "accept error; retrying every {} ms", ACCEPT_BACKOFF.as_millis()
                    );
                    last_logged = Some(Instant::now());
                    unlogged = 0;
                } else {
                    unlogged += 1;
                }
                tokio::select! {
                    biased;
                    () = &mut shutdown => break,
                    () = tokio::time::sleep(ACCEPT_BACKOFF) => continue,
                }
            }
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let body_timeout = limits.body_timeout;
        let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let mut request = request.map(|body| DeadlineBody::new(body, body_timeout));
            request.extensions_mut().insert(ConnectInfo(peer));
            router.clone().oneshot(request)
        });
        let connection = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            // Errors here are the client's (a timeout, a reset, a malformed request).
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection closed with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Errors of one connection that was already gone, after which accepting again at once is right.
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(e.kind(), ConnectionAborted | ConnectionReset | ConnectionRefused | Interrupted)
}

#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time")]
pub struct BodyTimeout;

/// A request body that must end by a deadline set when its head arrived: a per-read timeout
/// would still let a client send one byte every few seconds for ever.
pub struct DeadlineBody {
    inner: Incoming,
    deadline: Instant,
    /// Set only once a read has to wait, so that most bodies never arm a timer.
    sleep: Option<Pin<Box<Sleep>>>,
}

impl DeadlineBody {
    fn new(inner: Incoming, limit: Duration) -> Self {
        Self { inner, deadline: Instant::now() + limit, sleep: None }
    }
}

impl HttpBody for DeadlineBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let deadline = this.deadline;
        let sleep = this.sleep.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(BodyTimeout.into()))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
