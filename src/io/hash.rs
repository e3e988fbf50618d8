//! Hashes of what protokd reads and writes (provenance records, audit listings).

use sha2::{Digest, Sha256};
use std::io::{self, Read};

/// Lower-case hex SHA-256 of bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Lower-case hex SHA-256 of the file at `path`, streamed (never held in memory whole).
pub fn sha256_file(path: &std::path::Path) -> io::Result<String> {
    Hashing::new(std::fs::File::open(path)?).finish()
}

fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// A reader that hashes every byte read through it: the SHA-256 of a file computed from the
/// same read that decodes it.
pub(crate) struct Hashing<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Hashing<R> {
    /// Hashes what is read from `inner`.
    pub(crate) fn new(inner: R) -> Self {
        Hashing {
            inner,
            hasher: Sha256::new(),
        }
    }

    /// Reads the rest of the stream (streamed through the hasher, not held) and returns the
    /// lower-case hex SHA-256 of everything.
    pub(crate) fn finish(mut self) -> io::Result<String> {
        io::copy(&mut self.inner, &mut self.hasher)?;
        Ok(hex(&self.hasher.finalize()))
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}
