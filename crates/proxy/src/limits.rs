//! The proxy's budget of open files: two descriptors a client connection, its own and its
//! upstream connection.

use engine_runtime::limits::{FDS_PER_SHARD, FDS_RESERVED, MAX_SHARDS};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LimitError {
    #[error(
        "--max-conns {max_conns} needs about {needed} open files (two a client connection, one of them its \
         upstream connection; {FDS_PER_SHARD} a shard), but this process may open at most {hard} \
         (hard RLIMIT_NOFILE, see `ulimit -Hn`); lower --max-conns to {fits} or raise the hard limit"
    )]
    Files { max_conns: u64, needed: u64, hard: u64, fits: u64 },
    #[error(transparent)]
    Runtime(#[from] engine_runtime::limits::LimitError),
}

/// The most client connections a proxy of `shards` shards can hold within `hard` open files:
/// each takes two descriptors, its own and an upstream connection.
pub fn conns_budget(shards: u64, hard: u64) -> u64 {
    hard.saturating_sub(FDS_RESERVED).saturating_sub(shards.saturating_mul(FDS_PER_SHARD)) / 2
}

/// Checks a proxy's `--shards` and `--max-conns` against [`MAX_SHARDS`] and the hard file limit.
pub fn check(max_conns: u64, shards: u64, hard: u64) -> Result<(), LimitError> {
    if shards > MAX_SHARDS {
        return Err(engine_runtime::limits::LimitError::Shards(shards).into());
    }
    let fits = conns_budget(shards, hard);
    if max_conns > fits {
        let needed = max_conns.saturating_mul(2).saturating_add(shards * FDS_PER_SHARD).saturating_add(FDS_RESERVED);
        return Err(LimitError::Files { max_conns, needed, hard, fits });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_budgets() {
        // 20,000 files, 2 shards: 64 reserved, 32 for the shards, two for each client.
        assert_eq!(conns_budget(2, 20_000), 9_952);
        assert_eq!(check(9_952, 2, 20_000), Ok(()));
        assert!(matches!(check(10_000, 2, 20_000), Err(LimitError::Files { needed: 20_096, fits: 9_952, .. })));
        assert_eq!(check(1, 1025, u64::MAX), Err(engine_runtime::limits::LimitError::Shards(1025).into()));
        assert_eq!(conns_budget(u64::MAX, 100), 0);
    }
}
