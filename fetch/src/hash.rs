//! The one streaming sha256: a reader that hashes what passes through it.
//!
//! Downloads, local tarballs and the re-verification of a blob while it is unpacked all read through
//! [`Hashing`], so there is one place where bytes become a digest.

use std::io::{self, Read};

use sha2::Digest;

/// Wraps a reader; every byte read through it is hashed.
#[derive(Debug)]
pub(crate) struct Hashing<R> {
    inner: R,
    hasher: sha2::Sha256,
}

impl<R> Hashing<R> {
    pub(crate) fn new(inner: R) -> Hashing<R> {
        Hashing { inner, hasher: sha2::Sha256::new() }
    }

    /// The lower-case hex sha256 of everything read.
    pub(crate) fn finish(self) -> String {
        hex::encode(self.hasher.finalize())
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// The sha256 of everything `input` yields.
pub(crate) fn sha256_of(input: impl Read) -> io::Result<String> {
    let mut reader = Hashing::new(input);
    io::copy(&mut reader, &mut io::sink())?;
    Ok(reader.finish())
}

#[cfg(test)]
mod tests {
    #[test]
    fn known_digest() {
        let d = super::sha256_of(&b"abc"[..]).unwrap_or_default();
        assert_eq!(d, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
