//! Keeping the kernel's scheduler tick alive on a shard's CPU while work arrives.
//!
//! A tickless kernel (`NO_HZ_IDLE`, the distributions' default) stops the periodic tick when
//! a CPU goes idle with no timer due within one tick, and starts it again when the CPU is
//! woken. In a virtual machine that restart reprograms the timer through the hypervisor: on
//! the project's 2-vCPU guest it put 6–10 µs between a shard's wake-up and its running, twice
//! for each request a proxy forwards at light load (`benches/RESULTS.md`, 2026-12-05
//! evening). A timer due within the tick keeps the tick running through short idles, so the
//! wake-up skips the restart; [`keep_tick`] holds one due while the shard is busy, and lets
//! the tick stop again once it is quiet.

use std::time::Duration;

/// The keeper's timer while work arrives: under the longest common tick (4 ms at `HZ=250`).
const STEP: Duration = Duration::from_millis(3);
/// Steps without new work before the keeper lets the tick stop.
const QUIET_STEPS: u32 = 10;
/// How often a quiet keeper looks for work again.
const QUIET_LOOK: Duration = Duration::from_millis(100);

/// Runs forever (drop it to stop): while `work()` (a count of work arrived that only grows:
/// requests, connections) keeps moving, a timer is due every 3 ms, so the kernel keeps the CPU's tick;
/// after ten steps without new work it looks only every 100 ms. Costs at most one wake-up per
/// step while busy, and usually none: a busy shard is awake when the timer fires, or is woken
/// by work first.
pub async fn keep_tick(mut work: impl FnMut() -> u64) {
    let mut seen = work();
    let mut quiet = QUIET_STEPS;
    loop {
        glommio::timer::sleep(if quiet < QUIET_STEPS { STEP } else { QUIET_LOOK }).await;
        let now = work();
        if now == seen {
            quiet = quiet.saturating_add(1);
        } else {
            (seen, quiet) = (now, 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::rc::Rc;

    use super::*;
    use crate::Executor;
    use glommio::Placement;

    /// The keeper's timer runs every step while work arrives, and all but stops once it does
    /// not: a proxy idle for days costs a look every 100 ms, not a wake-up every 3.
    #[test]
    fn the_keeper_steps_while_work_arrives_and_rests_when_it_stops() {
        let (busy, quiet) = Executor::new("keep-tick-test", Placement::Unbound)
            .spawn(|| async {
                let (work, looks) = (Rc::new(Cell::new(0u64)), Rc::new(Cell::new(0u64)));
                let (w, l) = (work.clone(), looks.clone());
                let keeper = glommio::spawn_local(keep_tick(move || {
                    l.set(l.get() + 1);
                    w.get()
                }));
                // 300 ms of work arriving every millisecond.
                for _ in 0..300 {
                    work.set(work.get() + 1);
                    glommio::timer::sleep(Duration::from_millis(1)).await;
                }
                let busy = looks.get();
                glommio::timer::sleep(Duration::from_secs(1)).await;
                let quiet = looks.get() - busy;
                drop(keeper);
                (busy, quiet)
            })
            .unwrap()
            .join()
            .unwrap();
        // The first look comes up to 100 ms in (it rested before any work), then one every 3 ms.
        assert!((50..=110).contains(&busy), "{busy} looks in 300 ms of work");
        // Ten more steps, then ten looks in the rest of the second.
        assert!(quiet <= 25, "{quiet} looks in a quiet second");
    }
}
