//! Timeouts without a timer per read. A connection says what it is waiting for and until
//! when ([`Slot::arm`]: two cell writes); the shard's tick sweeps every slot and shuts down
//! the socket of each wait past its deadline, which ends the pending read or write. The
//! connection then asks [`Slot::expired`] whether its I/O ended by itself or by a timeout.
//!
//! Deadlines come from the shard's coarse clock (updated every tick), pushed one tick later so
//! a wait never ends early: a timeout `t` fires between `t` and `t` + two ticks.

use engine_runtime::fd::{shutdown, How};
use std::cell::Cell;
use std::os::fd::RawFd;
use std::time::Instant;

/// What a connection is waiting for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wait {
    /// The first byte of the next request on a kept-alive connection.
    Idle,
    /// The rest of a request head (from its first byte: slowloris).
    Header,
    /// More of a request body.
    Body,
    /// The client to take response bytes.
    Write,
    /// The upstream: accepting the request, or sending (more of) its response.
    Upstream,
    /// Bytes either way through an upgrade tunnel; the wait's fd is the upstream's, and a
    /// timeout or a drain shuts down both sockets.
    Tunnel,
}

/// One client connection's entry in its shard's registry.
pub(crate) struct Slot {
    pub fd: RawFd,
    /// A request is in progress: a drain lets it finish rather than closing at once.
    pub busy: Cell<bool>,
    wait: Cell<Option<(Wait, RawFd, Instant)>>,
    expired: Cell<Option<Wait>>,
}

impl Slot {
    pub fn new(fd: RawFd) -> Self {
        Slot { fd, busy: Cell::new(false), wait: Cell::new(None), expired: Cell::new(None) }
    }

    /// Until the guard drops (or `deadline` passes), I/O on `fd` is a `what` wait. The guard
    /// makes sure no deadline outlives the I/O it watches: the fd may be closed and its number
    /// reused right after.
    pub fn arm(&self, what: Wait, fd: RawFd, deadline: Instant) -> Armed<'_> {
        self.wait.set(Some((what, fd, deadline)));
        Armed(self)
    }

    /// Moves the current wait's deadline (a tunnel that moved bytes is not idle).
    pub fn extend(&self, deadline: Instant) {
        if let Some((what, fd, _)) = self.wait.get() {
            self.wait.set(Some((what, fd, deadline)));
        }
    }

    /// Shuts down the connection's socket, and a tunnel's upstream socket with it.
    pub fn shutdown(&self) {
        shutdown(self.fd, How::Both);
        if let Some((Wait::Tunnel, fd, _)) = self.wait.get() {
            shutdown(fd, How::Both);
        }
    }

    /// The wait that timed out since the last call, if one did.
    pub fn expired(&self) -> Option<Wait> {
        self.expired.take()
    }

    /// Ends the current wait if it is past its deadline (called by the shard's tick).
    pub fn sweep(&self, now: Instant) {
        if let Some((what, fd, deadline)) = self.wait.get() {
            if now >= deadline {
                self.wait.set(None);
                self.expired.set(Some(what));
                // A head that timed out still gets its 408, so only reading stops there.
                // The fd is open: its wait is armed only while an `Armed` guard lives, and the
                // guard is dropped before the socket it watches.
                let how = if what == Wait::Header { How::Read } else { How::Both };
                shutdown(fd, how);
                if what == Wait::Tunnel {
                    shutdown(self.fd, How::Both);
                }
            }
        }
    }
}

/// Disarms its slot when dropped.
pub(crate) struct Armed<'a>(&'a Slot);

impl Drop for Armed<'_> {
    fn drop(&mut self) {
        self.0.wait.set(None);
    }
}
