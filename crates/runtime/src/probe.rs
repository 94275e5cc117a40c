//! What the engine needs from the kernel, checked once at start: io_uring with
//! `IORING_SETUP_COOP_TASKRUN` and `IORING_SETUP_TASKRUN_FLAG` (Linux 5.19), which the
//! vendored glommio sets on its rings. Without this check a kernel that lacks them fails
//! inside each executor's thread, and a run could end "successfully" with nothing sent.

use std::io;

/// `IORING_SETUP_COOP_TASKRUN` and `IORING_SETUP_TASKRUN_FLAG` (include/uapi/linux/io_uring.h).
const SETUP_FLAGS: u32 = (1 << 8) | (1 << 9);

/// `struct io_uring_params`: 120 bytes, the kernel fills what it does not get from us.
#[repr(C)]
#[derive(Default)]
struct Params {
    sq_entries: u32,
    cq_entries: u32,
    flags: u32,
    sq_thread_cpu: u32,
    sq_thread_idle: u32,
    features: u32,
    wq_fd: u32,
    resv: [u32; 3],
    sq_off: [u32; 10],
    cq_off: [u32; 10],
}

/// Why this kernel cannot run the engine.
#[derive(Debug, thiserror::Error)]
#[error("this kernel ({kernel}) cannot run the engine: {missing}")]
pub struct ProbeError {
    pub kernel: String,
    pub missing: String,
}

/// Sets up (and closes) a small ring with the flags the engine's executors use.
pub fn io_uring() -> Result<(), ProbeError> {
    // A test stands in for an older kernel with the error it would give.
    if let Some(errno) = std::env::var("ENGINE_TEST_PROBE_ERRNO").ok().and_then(|v| v.parse().ok()) {
        return Err(explain(io::Error::from_raw_os_error(errno)));
    }
    let mut params = Params { flags: SETUP_FLAGS, ..Default::default() };
    // SAFETY: io_uring_setup reads and writes the params struct we own, of the size the
    // kernel expects; the descriptor it returns is ours and closed below.
    let fd = unsafe { libc::syscall(libc::SYS_io_uring_setup, 4u32, &mut params as *mut Params) };
    if fd >= 0 {
        // SAFETY: the ring's descriptor, just returned to us and used nowhere else.
        unsafe { libc::close(fd as i32) };
        return Ok(());
    }
    Err(explain(io::Error::last_os_error()))
}

/// What an `io_uring_setup` failure means for a user.
fn explain(e: io::Error) -> ProbeError {
    let missing = match e.raw_os_error() {
        Some(libc::ENOSYS) => "io_uring is missing (Linux 5.19 or later with CONFIG_IO_URING)".to_string(),
        Some(libc::EINVAL) => {
            "io_uring lacks IORING_SETUP_COOP_TASKRUN and IORING_SETUP_TASKRUN_FLAG (Linux 5.19 or later)".to_string()
        }
        Some(libc::EPERM) | Some(libc::EACCES) => {
            "io_uring is disabled for this process (sysctl kernel.io_uring_disabled, a seccomp profile or a container \
             runtime that blocks it)"
                .to_string()
        }
        Some(libc::ENOMEM) => {
            "io_uring could not lock memory for its rings: raise the locked-memory limit (ulimit -l, systemd \
             LimitMEMLOCK=)"
                .to_string()
        }
        _ => format!("io_uring_setup failed: {e}"),
    };
    ProbeError { kernel: kernel_release(), missing }
}

/// `uname -r`.
fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| format!("Linux {}", s.trim()))
        .unwrap_or_else(|_| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_kernel_runs_the_engine() {
        io_uring().unwrap();
    }

    #[test]
    fn failures_say_what_is_missing() {
        assert_eq!(std::mem::size_of::<Params>(), 120);
        let e = explain(io::Error::from_raw_os_error(libc::EINVAL));
        assert!(e.to_string().contains("COOP_TASKRUN") && e.to_string().contains("5.19"), "{e}");
        assert!(e.to_string().starts_with("this kernel (Linux "), "{e}");
        assert!(explain(io::Error::from_raw_os_error(libc::ENOSYS)).to_string().contains("io_uring is missing"));
        assert!(explain(io::Error::from_raw_os_error(libc::EPERM)).to_string().contains("io_uring_disabled"));
        assert!(explain(io::Error::from_raw_os_error(libc::ENOMEM)).to_string().contains("ulimit -l"));
    }
}
