//! Which CPUs the shards run on: the process's affinity mask, or a list the user gives.

use std::io;

/// The CPUs this process may run on (its `sched_getaffinity` mask), ascending. Under
/// `taskset -c 1` this is `[1]`, so a benchmark that pins the engine gets one shard there.
pub fn allowed_cpus() -> io::Result<Vec<usize>> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity fills it for pid 0 (this thread,
    // whose mask is the one the process was started with until a shard pins itself).
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok((0..libc::CPU_SETSIZE as usize).filter(|&c| libc::CPU_ISSET(c, &set)).collect())
    }
}

/// Why a shard count was refused.
#[derive(Debug, thiserror::Error)]
pub enum ShardsError {
    #[error("--shards must be at least 1")]
    Zero,
    #[error(transparent)]
    Limit(#[from] crate::limits::LimitError),
}

/// The shard count asked for (`None`: one per CPU of `cpus`), checked.
pub fn shard_count(shards: Option<usize>, cpus: &[usize]) -> Result<usize, ShardsError> {
    match shards {
        Some(0) => Err(ShardsError::Zero),
        Some(n) if n as u64 > crate::limits::MAX_SHARDS => Err(crate::limits::LimitError::Shards(n as u64).into()),
        Some(n) => Ok(n),
        None => Ok(cpus.len().max(1)),
    }
}

/// One CPU per shard, over `cpus` in turn: a CPU repeats when shards outnumber them.
pub fn spread(shards: usize, cpus: &[usize]) -> Vec<usize> {
    (0..shards).map(|i| cpus[i % cpus.len()]).collect()
}

/// Parses a CPU list such as `0,2-3`.
pub fn parse_cpu_list(text: &str) -> Result<Vec<usize>, String> {
    let mut cpus = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let bad = || format!("invalid CPU list '{text}' (example: 0,2-3)");
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => {
                (a.trim().parse::<usize>().map_err(|_| bad())?, b.trim().parse::<usize>().map_err(|_| bad())?)
            }
            None => {
                let c = part.parse::<usize>().map_err(|_| bad())?;
                (c, c)
            }
        };
        if lo > hi || hi >= libc::CPU_SETSIZE as usize {
            return Err(bad());
        }
        cpus.extend(lo..=hi);
    }
    cpus.sort_unstable();
    cpus.dedup();
    if cpus.is_empty() {
        return Err(format!("empty CPU list '{text}'"));
    }
    Ok(cpus)
}

/// The CPUs of a shard list, each once, in order.
pub fn distinct(shard_cpus: &[usize]) -> Vec<usize> {
    let mut cpus = shard_cpus.to_vec();
    cpus.sort_unstable();
    cpus.dedup();
    cpus
}

/// For a start line: a note when shards outnumber their CPUs. Shards on one CPU only take
/// turns on it: more switching, no more CPU.
pub fn shared_cpus(shard_cpus: &[usize]) -> String {
    let cpus = distinct(shard_cpus).len();
    if shard_cpus.len() > cpus {
        format!(
            ", up to {} shards per CPU, taking turns; --shards {cpus} would use them better",
            shard_cpus.len().div_ceil(cpus)
        )
    } else {
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0,2-3"), Ok(vec![0, 2, 3]));
        assert_eq!(parse_cpu_list("1"), Ok(vec![1]));
        assert!(parse_cpu_list("3-1").is_err());
        assert!(parse_cpu_list("x").is_err());
        assert!(parse_cpu_list("").is_err());
    }

    #[test]
    fn affinity_mask_is_not_empty() {
        assert!(!allowed_cpus().unwrap().is_empty());
    }
}
