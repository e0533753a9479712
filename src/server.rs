//! The HTTP/1.1 server: accepts connections up to a cap, and closes those
//! whose client is too slow to send its request headers or has left them
//! idle too long.
//!
//! hyper's own `header_read_timeout` also runs while a keep-alive connection
//! waits for its next request, so it cannot give a short header deadline
//! (10 s) together with a longer idle one (60 s), and axum's `serve` exposes
//! neither; this module watches each connection instead: the header clock
//! starts with a connection and with the first byte of each later request,
//! stops when the request's head has been read, and the idle clock runs from
//! the end of a response until the next byte arrives.

use std::{
    future::Future,
    io,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use axum::{Router, extract::ConnectInfo};
use hyper::{body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    server::graceful::GracefulShutdown,
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{Notify, Semaphore},
    time::Instant,
};
use tower::ServiceExt;

/// Bounds on connections.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Time a client has to send a request's headers.
    pub header_timeout: Duration,
    /// Time an idle keep-alive connection is kept.
    pub idle_timeout: Duration,
    /// Connections served at once; more wait in the listen queue.
    pub max_connections: usize,
}

/// Serves `router` on `listener` until `shutdown` completes, then lets the
/// requests in flight finish.
/// The largest read buffer of a connection.
const MAX_READ_BUFFER: usize = 128 * 1024;

pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    // The read buffer holds a request's line and headers: room for the
    // largest the service answers itself (414 and 431 in the envelope, see
    // `http::request::size`) with a margin; anything larger is refused by
    // the HTTP server before it is read whole.
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(None)
        .max_buf_size(MAX_READ_BUFFER);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
        };
        let (stream, client) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Out of file descriptors and the like: wait, do not spin.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let watch = Arc::new(Watch::new(limits));
        let io = TokioIo::new(Watched {
            inner: stream,
            watch: watch.clone(),
        });
        let service = {
            let (router, watch) = (router.clone(), watch.clone());
            service_fn(move |mut request: hyper::Request<Incoming>| {
                request.extensions_mut().insert(ConnectInfo(client));
                watch.request_started();
                let (router, watch) = (router.clone(), watch.clone());
                async move {
                    let response = router.oneshot(request).await;
                    watch.request_finished();
                    response
                }
            })
        };
        let connection = graceful.watch(builder.serve_connection(io, service));
        tokio::spawn(async move {
            tokio::select! {
                served = connection => {
                    if let Err(err) = served {
                        tracing::debug!(error = %err, %client, "connection ended with an error");
                    }
                }
                () = watch.expired() => tracing::debug!(%client, "slow or idle connection closed"),
            }
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// The clocks of one connection.
#[derive(Debug)]
struct Watch {
    limits: Limits,
    state: Mutex<Phase>,
    reading_head: AtomicBool,
    changed: Notify,
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Waiting for (the rest of) a request's head until the deadline.
    Head(Instant),
    /// A request is being served: no deadline (the request timeout applies).
    Busy,
    /// Waiting for the next request until the deadline.
    Idle(Instant),
}

impl Watch {
    fn new(limits: Limits) -> Self {
        Self {
            limits,
            state: Mutex::new(Phase::Head(Instant::now() + limits.header_timeout)),
            reading_head: AtomicBool::new(true),
            changed: Notify::new(),
        }
    }

    fn set(&self, phase: Phase) {
        *self.state.lock().unwrap_or_else(|p| p.into_inner()) = phase;
        self.reading_head
            .store(matches!(phase, Phase::Head(_)), Ordering::Release);
        self.changed.notify_one();
    }

    fn request_started(&self) {
        self.set(Phase::Busy);
    }

    fn request_finished(&self) {
        self.set(Phase::Idle(Instant::now() + self.limits.idle_timeout));
    }

    /// Bytes arrived: on an idle connection they start the header clock.
    fn read_some(&self) {
        if self.reading_head.load(Ordering::Acquire) {
            return;
        }
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Phase::Idle(_) = *state {
            *state = Phase::Head(Instant::now() + self.limits.header_timeout);
            self.reading_head.store(true, Ordering::Release);
            drop(state);
            self.changed.notify_one();
        }
    }

    /// Bytes were written: a response still going out keeps the connection
    /// from counting as idle.
    fn wrote_some(&self) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Phase::Idle(_) = *state {
            *state = Phase::Idle(Instant::now() + self.limits.idle_timeout);
        }
    }

    /// Completes when the connection has passed its current deadline.
    async fn expired(&self) {
        loop {
            let phase = *self.state.lock().unwrap_or_else(|p| p.into_inner());
            let deadline = match phase {
                Phase::Head(at) | Phase::Idle(at) => at,
                Phase::Busy => Instant::now() + self.limits.idle_timeout,
            };
            let changed = self.changed.notified();
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => {
                    let now = *self.state.lock().unwrap_or_else(|p| p.into_inner());
                    match now {
                        Phase::Head(at) | Phase::Idle(at) if at <= Instant::now() => return,
                        _ => {}
                    }
                }
                () = changed => {}
            }
        }
    }
}

/// A connection's stream that tells its [`Watch`] about traffic.
struct Watched {
    inner: TcpStream,
    watch: Arc<Watch>,
}

impl AsyncRead for Watched {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.watch.read_some();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.watch.wrote_some();
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.watch.wrote_some();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
