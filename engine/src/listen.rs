//! Servers on their own executor: [`spawn_bound`] starts a glommio executor that binds a
//! listener and serves it, and returns once the address is bound (or binding failed), so the
//! caller learns the port that `:0` picked. Used by `engine target`, the proxy's shards and
//! admin API, and the blast's `/metrics` endpoint.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::Duration;

use glommio::net::{TcpListener, TcpStream};
use glommio::{ExecutorJoinHandle, LocalExecutorBuilder, Placement};

/// Why a server did not start.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("cannot listen on {addr}: {cause}")]
    Bind { addr: SocketAddr, cause: io::Error },
    #[error("cannot start the {name} executor: {reason}")]
    Spawn { name: String, reason: String },
}

/// Where a server binds.
#[derive(Debug, Clone, Copy)]
pub enum Bind {
    /// A port nothing else listens on (port 0 picks one).
    Own(SocketAddr),
    /// The port an earlier executor of this process took with [`Bind::Own`].
    Join(SocketAddr),
}

/// Checks that nothing listens on `addr` and resolves port 0. glommio sets SO_REUSEPORT on
/// every listener, so without this a second proxy or target started on a port in use, or a
/// metrics endpoint aimed at one, would bind beside the first and silently take a share of
/// its connections. The probe sets no SO_REUSEPORT, so any listener on the port refuses it.
fn claim(addr: SocketAddr) -> Result<SocketAddr, ListenError> {
    let probe = std::net::TcpListener::bind(addr).map_err(|cause| ListenError::Bind { addr, cause })?;
    probe.local_addr().map_err(|cause| ListenError::Bind { addr, cause })
}

/// Starts executor `name` at `placement`, binds there (SO_REUSEPORT: several executors
/// may bind one port) and runs `serve` with the listener. Returns the bound address and the
/// executor's handle once listening.
///
/// `busy_poll`: after its last event the executor polls for this long before it sleeps. A
/// sleeping executor's next event waits for its CPU to wake (tens of µs on a VM whose idle
/// vCPUs halt); polling trades a busy CPU at light load for that latency. Only an executor
/// pinned to CPUs polls (glommio ignores it for `Placement::Unbound`).
pub fn spawn_bound<F, Fut>(
    name: &str,
    placement: Placement,
    busy_poll: Option<Duration>,
    bind: Bind,
    serve: F,
) -> Result<(SocketAddr, ExecutorJoinHandle<()>), ListenError>
where
    F: FnOnce(TcpListener) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let addr = match bind {
        Bind::Own(addr) => claim(addr)?,
        Bind::Join(addr) => addr,
    };
    let (tx, rx) = mpsc::channel::<io::Result<SocketAddr>>();
    let mut builder = LocalExecutorBuilder::new(placement);
    if let Some(d) = busy_poll {
        builder = builder.spin_before_park(d);
    }
    let handle = builder
        .name(name)
        // glommio reserves 10 MiB per executor for file I/O by default; sockets need none.
        .io_memory(64 * 1024)
        // One task queue of short tasks: preemption buys nothing, and its timers cost
        // io_uring_enter calls on every turn of the loop (patch in third_party/glommio).
        .preempt_timer(std::time::Duration::MAX)
        .spawn(move || async move {
            let listener = match TcpListener::bind(addr) {
                Ok(l) => l,
                Err(e) => {
                    let _ = tx.send(Err(e.into()));
                    return;
                }
            };
            let _ = tx.send(listener.local_addr().map_err(Into::into));
            serve(listener).await;
        })
        .map_err(|e| ListenError::Spawn { name: name.to_string(), reason: e.to_string() })?;
    match rx.recv() {
        Ok(Ok(bound)) => Ok((bound, handle)),
        Ok(Err(cause)) => Err(ListenError::Bind { addr, cause }),
        Err(_) => Err(ListenError::Spawn { name: name.to_string(), reason: "it exited before listening".into() }),
    }
}

/// Accepts connections and hands each to `each` until `stop` says so (checked every 50 ms).
/// Accept errors (out of descriptors, a connection reset while queued) pause 5 ms and go on.
pub async fn accept_until(listener: &TcpListener, stop: impl Fn() -> bool, mut each: impl FnMut(TcpStream)) {
    let accept = async {
        loop {
            match listener.accept().await {
                Ok(s) => each(s),
                Err(_) => glommio::timer::sleep(Duration::from_millis(5)).await,
            }
        }
    };
    let watch = async {
        while !stop() {
            glommio::timer::sleep(Duration::from_millis(50)).await;
        }
    };
    futures_lite::future::or(accept, watch).await;
}
