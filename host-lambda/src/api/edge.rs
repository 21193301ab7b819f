//! The local server's connection edge: how long a client may take to send its headers and
//! its body, and how many connections are served at once — so slow, idle or stalled
//! clients can't pin sockets, file descriptors or buffered bodies (issue 17).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::time::{Instant, Sleep};

/// The connection limits of `imgsvc serve` (see docs/configuration.md, "Limits and timeouts").
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// A request's headers must arrive within this; hyper starts the same timer when a
    /// connection (new or kept alive) waits for its next request, so it is also the idle
    /// timeout.
    pub header_timeout: Duration,
    /// Longest gap between two pieces of a request body (a stalled upload).
    pub body_idle_timeout: Duration,
    /// Longest time to receive a whole request body (a trickled upload).
    pub body_timeout: Duration,
    /// Connections served at once; more wait in the listen backlog.
    pub max_connections: usize,
}

/// Why a request body was cut off.
#[derive(Debug, Clone, Copy, thiserror::Error)]
pub enum BodyTimeout {
    #[error("the request body stalled for more than {0:?}")]
    Stalled(Duration),
    #[error("the request body took longer than {0:?}")]
    TooSlow(Duration),
}

impl BodyTimeout {
    /// The `BodyTimeout` somewhere in an error's chain of sources, if any (body errors
    /// reach handlers wrapped by axum and multer).
    pub fn in_chain(error: &(dyn std::error::Error + 'static)) -> Option<BodyTimeout> {
        let mut current = Some(error);
        while let Some(error) = current {
            if let Some(timeout) = error.downcast_ref::<BodyTimeout>() {
                return Some(*timeout);
            }
            current = error.source();
        }
        None
    }
}

/// Serve `app` on `listener` until `shutdown` resolves, under `limits`; then stop
/// accepting, let open requests finish and return.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) {
    let app = app.layer(axum::middleware::from_fn_with_state(limits, body_deadline));
    let max_connections = limits.max_connections.max(1);
    let slots = Arc::new(tokio::sync::Semaphore::new(max_connections));
    let (stop, stopping) = tokio::sync::watch::channel(());
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        // A slot before accepting: past the cap, connections wait in the backlog instead
        // of taking a file descriptor each.
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot,
            () = &mut shutdown => break,
        };
        let Ok(slot) = slot else { break };
        let stream = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let stream = match stream {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Out of file descriptors, say: back off instead of spinning.
                tracing::warn!(%error, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "TCP_NODELAY");
        }
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let connection = http.serve_connection(TokioIo::new(stream), service);
        let mut stopping = stopping.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let mut connection = std::pin::pin!(connection);
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(error) = result {
                        tracing::debug!(%error, "connection closed");
                    }
                }
                _ = stopping.changed() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
        });
    }
    drop(listener);
    let _ = stop.send(());
    // Every slot back means every connection has finished.
    let all = u32::try_from(max_connections).unwrap_or(u32::MAX);
    let _ = slots.acquire_many(all).await;
}

/// Put every request body under the body deadlines.
async fn body_deadline(
    State(limits): State<ConnectionLimits>,
    request: Request,
    next: Next,
) -> Response {
    let request = request.map(|body| {
        Body::new(DeadlineBody::new(
            body,
            limits.body_idle_timeout,
            limits.body_timeout,
        ))
    });
    next.run(request).await
}

/// A body that fails with `BodyTimeout` when the next piece takes longer than `idle`, or
/// the whole body longer than `total` (both counted from the first read).
struct DeadlineBody {
    inner: Body,
    idle: Duration,
    total: Duration,
    /// The idle and total timers, started by the first read.
    timers: Option<(Timer, Timer)>,
}

type Timer = Pin<Box<Sleep>>;

impl DeadlineBody {
    fn new(inner: Body, idle: Duration, total: Duration) -> DeadlineBody {
        DeadlineBody {
            inner,
            idle,
            total,
            timers: None,
        }
    }
}

impl HttpBody for DeadlineBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        let (idle, total) = (this.idle, this.total);
        let (idle_timer, total_timer) = this.timers.get_or_insert_with(|| {
            let now = Instant::now();
            (
                Box::pin(tokio::time::sleep_until(now + idle)),
                Box::pin(tokio::time::sleep_until(now + total)),
            )
        });
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            idle_timer.as_mut().reset(Instant::now() + idle);
            return Poll::Ready(frame);
        }
        if total_timer.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(axum::Error::new(BodyTimeout::TooSlow(total)))));
        }
        if idle_timer.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(axum::Error::new(BodyTimeout::Stalled(idle)))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
