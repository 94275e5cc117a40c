//! The runtime every mode of `engine` runs on: glommio executors pinned to CPUs, each with
//! a heartbeat; listeners; the operating system's budgets. What needs no executor (files a
//! user names, units) is in `engine-util`.
//!
//! # Layout
//! - [`executor`]: the one executor builder ([`Executor`]), [`Heartbeat`]s, periodic [`tick`]s
//!   and the test-only knobs (`ENGINE_TEST_TICK_DIVISOR`, `ENGINE_TEST_FAULT`).
//! - [`affinity`]: the CPUs this process may run on, CPU lists.
//! - [`fd`]: shutting a socket down from outside the task that owns it.
//! - [`idle`]: keeping the kernel's tick alive on a busy shard's CPU ([`keep_tick`]).
//! - [`listen`]: servers on their own executor, and the accept loop with a stop flag.
//! - [`endpoint`]: the one small HTTP server of the control surfaces (the blast's `/metrics`,
//!   the proxy's admin API).
//! - [`probe`]: what the engine needs from the kernel (io_uring with COOP_TASKRUN), checked
//!   at start.
//! - [`limits`]: open files and ephemeral ports, checked before a run starts.
//! - [`compat`]: a glommio socket behind tokio's io traits, for `h2`.
//!
//! The library neither prints nor exits.

pub mod affinity;
pub mod compat;
pub mod endpoint;
pub mod executor;
pub mod fd;
pub mod idle;
pub mod limits;
pub mod listen;
pub mod probe;

pub use executor::{current_executor, tick, within, Executor, Heartbeat, Pulse, SpawnError, BEAT, LATE_AFTER};
pub use idle::keep_tick;
