//! TCP mode (`engine proxy --tcp`): every client connection is passed byte for byte to a new
//! upstream connection, whatever it speaks (TLS passes through untouched). The rules act on
//! connections, as toxiproxy's toxics do: `reset` (the client's connection reset at once),
//! `timeout` and `hang` (nothing passes; closed after a while, or never), `delay` (before the
//! upstream is connected), and the stream faults per direction (latency, bandwidth, slicer,
//! limit_data, slow_close). An open connection takes the rules again when they change, so a
//! change through the admin API applies to the bytes that follow. In `/stats` and Prometheus
//! each connection counts as a tunnel (opened, closed, bytes each way, how long it lasted).

use std::time::{Duration, Instant};

use engine_tls::{ServerConnection, Stream};

use crate::faults::FaultKind;
use crate::inject::End;
use crate::shard::Shard;
use crate::slot::Slot;
use crate::stats::UpstreamError;

/// Serves one client connection in TCP mode until either side ends it.
pub(crate) async fn serve(shard: &Shard, mut down: Stream<ServerConnection>, slot: &Slot) {
    let decision = shard.faults.borrow_mut().decide_connection();
    match decision.end {
        Some(End::Reset(_)) => {
            shard.stats.borrow_mut().fault(FaultKind::Reset);
            engine_runtime::fd::reset_on_close(down.fd());
            return;
        }
        Some(End::Hang) => {
            shard.stats.borrow_mut().fault(FaultKind::Hang);
            return hold(&mut down, None).await;
        }
        Some(End::Timeout(d)) => {
            shard.stats.borrow_mut().fault(FaultKind::Timeout);
            return hold(&mut down, Some(d).filter(|d| !d.is_zero())).await;
        }
        // HTTP answers are refused in TCP mode when a rule is added.
        Some(End::Respond { .. }) => return,
        None => {}
    }
    if !decision.delay.is_zero() {
        shard.stats.borrow_mut().fault(FaultKind::Delay);
        glommio::timer::sleep(decision.delay).await;
    }
    shard.stats.borrow_mut().stream_faults(decision.stream_kinds);
    let mut up = match shard.pool.connect().await {
        Ok(up) => up,
        Err(_) => {
            shard.stats.borrow_mut().upstream_error(UpstreamError::Refused);
            return;
        }
    };
    shard.stats.borrow_mut().tunnel_opened();
    let opened = Instant::now();
    let shapes = (decision.up, decision.down);
    let recheck = Some(decision.active);
    let _ =
        crate::tunnel::splice(shard, slot, &mut down, &mut up.stream, shapes, (Vec::new(), Vec::new()), recheck).await;
    shard.stats.borrow_mut().tunnel_closed(opened.elapsed());
}

/// Reads and drops what the client sends until it closes, or `for` has passed; then the
/// connection closes (the caller drops it).
async fn hold(down: &mut Stream<ServerConnection>, until: Option<Duration>) {
    let drain = async {
        let mut buf = [0u8; 512];
        while matches!(down.read(&mut buf).await, Ok(n) if n > 0) {}
    };
    match until {
        None => drain.await,
        Some(d) => futures_lite::future::or(drain, glommio::timer::sleep(d)).await,
    }
}
