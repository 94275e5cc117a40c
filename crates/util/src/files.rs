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

/// Reads all of `path`, at most `limit` bytes.
pub fn read_limited(path: &Path, limit: u64) -> Result<Vec<u8>, FileError> {
    let mut out = Vec::new();
    // One byte past the limit: reading it means the file is over the limit.
    std::fs::File::open(path)
        .and_then(|f| f.take(limit.saturating_add(1)).read_to_end(&mut out))
        .map_err(FileError::Io)?;
    if out.len() as u64 > limit {
        return Err(FileError::TooLarge { limit });
    }
    Ok(out)
}

/// Reads all of `path` as UTF-8 text, at most `limit` bytes.
pub fn read_limited_string(path: &Path, limit: u64) -> Result<String, FileError> {
    let bytes = read_limited(path, limit)?;
    String::from_utf8(bytes).map_err(|_| FileError::Io(io::Error::new(io::ErrorKind::InvalidData, "not UTF-8 text")))
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
