//! Shutting a socket down from outside the task that owns it: how a server's stop, a drain
//! or a timeout sweep wakes a read or write that would otherwise wait forever. And making a
//! socket's close a reset (a fault a proxy injects).

use std::os::fd::RawFd;

/// Which direction [`shutdown`] ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum How {
    Read,
    Write,
    Both,
}

/// Shuts the socket `fd` down; a pending read then sees end of stream and a pending write
/// fails at once. The descriptor stays open: its owner closes it as usual.
///
/// The callers keep a registry of the sockets their tasks own (a slot per connection) and
/// take a socket out of it before the socket is dropped, so `fd` is always a live socket of
/// theirs, never a number the kernel has given to another file since. A stale number would
/// not be memory-unsafe, only wrong: it would end someone else's socket.
pub fn shutdown(fd: RawFd, how: How) {
    let how = match how {
        How::Read => libc::SHUT_RD,
        How::Write => libc::SHUT_WR,
        How::Both => libc::SHUT_RDWR,
    };
    // SAFETY: shutdown(2) takes any integer and touches no memory of ours; see above for why
    // `fd` is the caller's own socket.
    unsafe { libc::shutdown(fd, how) };
}

/// Makes the coming close of `fd` send a TCP reset: a linger time of zero sends RST, not FIN.
pub fn reset_on_close(fd: RawFd) {
    let linger = libc::linger { l_onoff: 1, l_linger: 0 };
    // SAFETY: setsockopt(2) reads `size_of::<linger>()` bytes from a valid local; the caller
    // holds the stream `fd` belongs to (a stale number would only be wrong, as above).
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}
