//! Operating-system budgets a run must fit in: open files and ephemeral ports.
//! They are checked before the start so a run never dies half-way with EMFILE.

use std::io;

/// File descriptors a shard needs besides its connections: io_uring rings, eventfds,
/// timers and the listener-free bookkeeping glommio keeps (measured: 9 per executor).
pub const FDS_PER_SHARD: u64 = 16;
/// Descriptors the process needs whatever the load: stdio, output files, the pre-flight
/// socket, a metrics listener.
pub const FDS_RESERVED: u64 = 64;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LimitError {
    #[error(
        "--conns {conns} needs about {needed} open files (one a connection, {FDS_PER_SHARD} a shard, \
         {FDS_RESERVED} more), but this process may open at most {hard} (hard RLIMIT_NOFILE, see `ulimit -Hn`); \
         raise the hard limit (limits.conf, systemd LimitNOFILE=) or split the load over several engine processes"
    )]
    Files { conns: u64, needed: u64, hard: u64 },
    #[error("--shards {0} is more than {MAX_SHARDS}: a shard is an executor pinned to a CPU, so one per CPU is the most that helps")]
    Shards(u64),
    #[error(
        "--conns {conns} is more than the {ports} ephemeral ports {sources} source address(es) have towards \
         one target (net.ipv4.ip_local_port_range = {lo} {hi}); widen the range with sysctl, add source \
         addresses with --source-ips, or split the load over several hosts"
    )]
    Ports { conns: u64, ports: u64, lo: u64, hi: u64, sources: u64 },
}

/// The soft and hard open-files limits.
pub fn nofile() -> io::Result<(u64, u64)> {
    let mut rl = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((rl.rlim_cur, rl.rlim_max))
}

/// Raises the soft open-files limit to the hard one; returns the new soft limit.
pub fn raise_nofile() -> io::Result<u64> {
    let (soft, hard) = nofile()?;
    if soft < hard {
        let rl = libc::rlimit { rlim_cur: hard, rlim_max: hard };
        // SAFETY: setrlimit reads the struct we own.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &rl) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(hard)
}

/// The local port range connects draw from, inclusive.
pub fn ephemeral_port_range() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    let mut it = text.split_whitespace().map(|t| t.parse::<u64>().ok());
    Some((it.next()??, it.next()??))
}

/// What this host's settings may cost a run of `conns` connections from `sources` source
/// addresses, as advice to print at start-up (nothing here stops a run: the hard limits are
/// refused by [`check`]).
pub fn host_warnings(conns: u64, sources: u64) -> Vec<String> {
    let mut out = Vec::new();
    let sysctl = |name: &str| std::fs::read_to_string(format!("/proc/sys/{}", name.replace('.', "/"))).ok();
    if sysctl("net.ipv4.tcp_tw_reuse").is_some_and(|v| v.trim() == "0") {
        out.push(
            "net.ipv4.tcp_tw_reuse = 0: every reconnect (a server's Connection: close, an error) leaves a port \
             in TIME_WAIT for 60 s; set it to 1 on a load host"
                .to_string(),
        );
    }
    if let Some((lo, hi)) = ephemeral_port_range() {
        let ports = (hi.saturating_sub(lo) + 1) * sources.max(1);
        if conns * 2 > ports {
            out.push(format!(
                "--conns {conns} uses more than half of the {ports} ephemeral ports towards the target: \
                 reconnects may find none free while old ones sit in TIME_WAIT; widen \
                 net.ipv4.ip_local_port_range or add --source-ips"
            ));
        }
    }
    out
}

/// The most shards a process may run (each is a thread with its own io_uring rings).
pub const MAX_SHARDS: u64 = 1024;

/// Checks that `conns` connections over `shards` shards fit the hard file limit and the
/// ephemeral ports of one source address.
/// `sources` is the number of source addresses connections rotate over (1 without `--source-ips`).
pub fn check(
    conns: u64,
    shards: u64,
    hard_nofile: u64,
    ports: Option<(u64, u64)>,
    sources: u64,
) -> Result<(), LimitError> {
    if shards > MAX_SHARDS {
        return Err(LimitError::Shards(shards));
    }
    // Saturating: a --stages level of 1e19 connections is refused here, not overflowed.
    let needed = conns.saturating_add(shards.saturating_mul(FDS_PER_SHARD)).saturating_add(FDS_RESERVED);
    if needed > hard_nofile {
        return Err(LimitError::Files { conns, needed, hard: hard_nofile });
    }
    if let Some((lo, hi)) = ports {
        let sources = sources.max(1);
        let count = (hi.saturating_sub(lo) + 1).saturating_mul(sources);
        if conns > count {
            return Err(LimitError::Ports { conns, ports: count, lo, hi, sources });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets() {
        assert_eq!(check(10_000, 2, 20_000, Some((32768, 60999)), 1), Ok(()));
        assert!(matches!(check(19_990, 2, 20_000, None, 1), Err(LimitError::Files { .. })));
        assert!(matches!(
            check(30_000, 1, 100_000, Some((32768, 60999)), 1),
            Err(LimitError::Ports { ports: 28232, .. })
        ));
        assert_eq!(check(30_000, 1, 100_000, Some((32768, 60999)), 2), Ok(()));
        assert!(matches!(check(u64::MAX, 2, 20_000, None, 1), Err(LimitError::Files { needed: u64::MAX, .. })));
        assert_eq!(check(10, 1, u64::MAX, Some((0, 65535)), u64::MAX), Ok(()));
        assert_eq!(check(10, 2000, u64::MAX, None, 1), Err(LimitError::Shards(2000)));
    }

    #[test]
    fn reads_this_machine() {
        let (soft, hard) = nofile().unwrap();
        assert!(soft <= hard);
        assert!(ephemeral_port_range().is_some());
    }
}
