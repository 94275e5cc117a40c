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
use glommio::ExecutorJoinHandle;

use crate::executor::{tick, Executor};

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

/// A listener on `addr` with SO_REUSEPORT (several executors bind one port; glommio's own
/// `bind` sets only that) and SO_REUSEADDR, which its connections inherit: a server that closed
/// connections leaves them in TIME_WAIT on its port for a minute, and without SO_REUSEADDR on
/// both sides a proxy or target restarted on that port is refused ("Address already in use").
fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    use std::os::fd::{FromRawFd, IntoRawFd};
    let sk = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::STREAM, None)?;
    sk.set_reuse_address(true)?;
    sk.set_reuse_port(true)?;
    sk.bind(&addr.into())?;
    sk.listen(1024)?;
    // SAFETY: the descriptor is a bound, listening TCP socket this function owns and hands over.
    Ok(unsafe { TcpListener::from_raw_fd(sk.into_raw_fd()) })
}

/// Binds the port [`claim`] found. A port the kernel picked (`:0`) is free when claimed, but
/// between the claim and this bind an outgoing connection may take it as its local port (a
/// blast on the same host does, by the thousand): another free port is claimed then.
fn bind_claimed(mut addr: SocketAddr, any_port: bool) -> io::Result<TcpListener> {
    let mut tries = 0;
    loop {
        let e: io::Error = match listen(addr) {
            Ok(l) => return Ok(l),
            Err(e) => e,
        };
        if !(any_port && tries < 8 && e.kind() == io::ErrorKind::AddrInUse) {
            return Err(e);
        }
        tries += 1;
        addr.set_port(0);
        addr = claim(addr).map_err(|e| io::Error::new(io::ErrorKind::AddrInUse, e.to_string()))?;
    }
}

/// Starts `executor`, binds there (SO_REUSEPORT: several executors may bind one port) and
/// runs `serve` with the listener. Returns the bound address and the executor's handle once
/// listening.
pub fn spawn_bound<F, Fut>(
    executor: Executor,
    bind: Bind,
    serve: F,
) -> Result<(SocketAddr, ExecutorJoinHandle<()>), ListenError>
where
    F: FnOnce(TcpListener) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + 'static,
{
    let (addr, any_port) = match bind {
        Bind::Own(addr) => (claim(addr)?, addr.port() == 0),
        Bind::Join(addr) => (addr, false),
    };
    let (tx, rx) = mpsc::channel::<io::Result<SocketAddr>>();
    let name = executor.name().to_string();
    let handle = executor
        .spawn(move || async move {
            let listener = match bind_claimed(addr, any_port) {
                Ok(l) => l,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            let _ = tx.send(listener.local_addr().map_err(Into::into));
            serve(listener).await;
        })
        .map_err(|e| ListenError::Spawn { name: e.name, reason: e.reason })?;
    match rx.recv() {
        Ok(Ok(bound)) => Ok((bound, handle)),
        Ok(Err(cause)) => Err(ListenError::Bind { addr, cause }),
        Err(_) => Err(ListenError::Spawn { name, reason: "it exited before listening".into() }),
    }
}

/// How often [`accept_until`] reads its stop flag.
const STOP_CHECK: Duration = Duration::from_millis(50);

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
            glommio::timer::sleep(tick(STOP_CHECK)).await;
        }
    };
    futures_lite::future::or(accept, watch).await;
}
