//! Reading files a user names, with a size bound. A file's metadata cannot bound it: `/dev/zero`,
//! a FIFO or a file still being written report a size of 0 or less than they hold, and an
//! unbounded read of one never ends and takes all memory.

use std::io::{self, Read};
use std::path::Path;

/// Why a bounded read failed.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{0}")]
    Io(io::Error),
    #[error("larger than the {limit}-byte limit")]
    TooLarge { limit: u64 },
}

/// A reader that fails, rather than going on, once more than `limit` bytes came through.
pub struct Limited<R> {
    inner: R,
    left: u64,
    limit: u64,
}

impl<R: Read> Limited<R> {
    pub fn new(inner: R, limit: u64) -> Self {
        Limited { inner, left: limit, limit }
    }
}

impl<R: Read> Read for Limited<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // One byte past the limit is asked for, so a file of exactly `limit` bytes still ends.
        let want = buf.len().min(usize::try_from(self.left.saturating_add(1)).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n as u64 > self.left {
            return Err(io::Error::other(FileError::TooLarge { limit: self.limit }));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// Opens `path` for reading through a [`Limited`] reader.
pub fn open_limited(path: &Path, limit: u64) -> io::Result<Limited<std::fs::File>> {
    Ok(Limited::new(std::fs::File::open(path)?, limit))
}

/// Reads all of `path`, at most `limit` bytes.
pub fn read_limited(path: &Path, limit: u64) -> Result<Vec<u8>, FileError> {
    let mut out = Vec::new();
    open_limited(path, limit).and_then(|mut r| r.read_to_end(&mut out)).map_err(unwrap_too_large)?;
    Ok(out)
}

/// Reads all of `path` as UTF-8 text, at most `limit` bytes.
pub fn read_limited_string(path: &Path, limit: u64) -> Result<String, FileError> {
    let bytes = read_limited(path, limit)?;
    String::from_utf8(bytes).map_err(|_| FileError::Io(io::Error::new(io::ErrorKind::InvalidData, "not UTF-8 text")))
}

/// The [`FileError::TooLarge`] a [`Limited`] reader raised, back out of its `io::Error`.
pub fn unwrap_too_large(e: io::Error) -> FileError {
    match e.get_ref().and_then(|i| i.downcast_ref::<FileError>()) {
        Some(FileError::TooLarge { limit }) => FileError::TooLarge { limit: *limit },
        _ => FileError::Io(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endless_file_stops_at_the_limit() {
        assert!(matches!(read_limited(Path::new("/dev/zero"), 4096), Err(FileError::TooLarge { limit: 4096 })));
    }

    #[test]
    fn a_file_of_exactly_the_limit_is_read_whole() {
        let path = std::env::temp_dir().join(format!("engine-files-{}", std::process::id()));
        std::fs::write(&path, vec![b'x'; 5000]).unwrap();
        assert_eq!(read_limited(&path, 5000).unwrap().len(), 5000);
        assert!(matches!(read_limited(&path, 4999), Err(FileError::TooLarge { limit: 4999 })));
        assert_eq!(read_limited_string(&path, 10_000).unwrap().len(), 5000);
        let _ = std::fs::remove_file(&path);
        assert!(matches!(read_limited(&path, 10), Err(FileError::Io(e)) if e.kind() == io::ErrorKind::NotFound));
    }
}
