//! The one streaming hash: a reader that hashes what passes through it.
//!
//! Downloads, local tarballs, the re-verification of a blob while it is unpacked and the built-in
//! table's sha512 check all read through [`Hashing`], so there is one place where bytes become a digest.

use std::io::{self, Read};

use sha2::Digest;

/// Wraps a reader; every byte read through it is hashed with `D` (sha256 unless said otherwise).
#[derive(Debug)]
pub(crate) struct Hashing<R, D = sha2::Sha256> {
    inner: R,
    hasher: D,
}

impl<R, D: Digest> Hashing<R, D> {
    pub(crate) fn new(inner: R) -> Hashing<R, D> {
        Hashing { inner, hasher: D::new() }
    }

    /// The lower-case hex digest of everything read.
    pub(crate) fn finish(self) -> String {
        hex::encode(self.hasher.finalize())
    }
}

impl<R: Read, D: Digest> Read for Hashing<R, D> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

fn digest_of<D: Digest>(input: impl Read) -> io::Result<String> {
    let mut reader = Hashing::<_, D>::new(input);
    io::copy(&mut reader, &mut io::sink())?;
    Ok(reader.finish())
}

/// The sha256 of everything `input` yields.
pub(crate) fn sha256_of(input: impl Read) -> io::Result<String> {
    digest_of::<sha2::Sha256>(input)
}

/// The sha512 of everything `input` yields (the built-in table's digest for some releases).
#[cfg_attr(not(feature = "download"), allow(dead_code))] // used to download; tested in every build
pub(crate) fn sha512_of(input: impl Read) -> io::Result<String> {
    digest_of::<sha2::Sha512>(input)
}

#[cfg(test)]
mod tests {
    #[test]
    fn known_digests() {
        let d = super::sha256_of(&b"abc"[..]).unwrap_or_default();
        assert_eq!(d, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        let d = super::sha512_of(&b"abc"[..]).unwrap_or_default();
        assert!(d.starts_with("ddaf35a193617aba"), "{d}");
    }
}
