//! The vendored glommio (third_party/glommio, PATCHES.md) must never sleep through a timer.
//! Our servers (target, proxy shards, admin) notice a stop request only through a timer, so a
//! lost wake-up hangs `Target::stop` and the proxy's drain. glommio 0.9 could park with woken
//! tasks still queued (fixed there, see PATCHES.md); with the wake timer kept armed across
//! sleeps, that made a target blasted for 100 ms fail to stop about once in 150 rounds. A few
//! rounds run with every `cargo test`; before changing glommio's sleep, timer or task-queue
//! code, run many: `ENGINE_WAKEUP_ROUNDS=1000 cargo test -p engine-tests --test runtime_wakeups`.

mod support;

use std::sync::mpsc;
use std::time::Duration;

use engine_target::{Target, TargetConfig};

#[test]
fn target_stops_after_every_blast() {
    let rounds: u32 = std::env::var("ENGINE_WAKEUP_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    for round in 0..rounds {
        let t = Target::start(TargetConfig::loopback(Duration::ZERO).unwrap()).unwrap();
        let url = format!("http://{}/", t.local_addr());
        let s = support::blast(&url, 2, 100, 1000);
        assert!(s.requests > 0, "round {round}: no responses");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            t.stop();
            let _ = tx.send(());
        });
        assert!(
            rx.recv_timeout(Duration::from_secs(3)).is_ok(),
            "round {round}: the target did not stop within 3 s (a lost timer wake-up)"
        );
    }
}
