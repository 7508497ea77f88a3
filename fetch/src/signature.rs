//! OpenPGP detached signatures (`<tarball>.asc`) over release tarballs, checked in pure Rust.
//!
//! Alpine signs every release with Natanael Copa's key, fingerprint
//! `0482 D840 22F5 2DF1 C4E7 CD43 293A CD09 07D9 495A` (printed on alpinelinux.org/downloads). The key
//! block in `keys/ncopa.asc` is the one Alpine publishes at `https://alpinelinux.org/keys/ncopa.asc`;
//! the copy here was taken from a public project that embeds it verbatim (JLM AlpineBuilder,
//! `Command/Download.php`, constant `ALPINE_GPG_PUBLIC_KEY`), and a test checks its fingerprint, so a
//! wrong or altered block cannot pass unnoticed.

#[cfg(feature = "download")]
mod verify;
#[cfg(feature = "download")]
pub(crate) use verify::{trusted_keys, verify};

/// The fingerprint Alpine publishes for its release key, which the crate embeds (upper-case hex, no
/// spaces).
pub const ALPINE_KEY_FINGERPRINT: &str = "0482D84022F52DF1C4E7CD43293ACD0907D9495A";

/// Why a signature was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureProblem {
    /// The policy is [`crate::Signature::Required`] and the mirror has no `.asc`.
    #[error("the release is not signed (no .asc on the mirror) and a signature is required")]
    Missing,
    /// The `.asc` is not an OpenPGP signature.
    #[error("the .asc is not an OpenPGP signature ({reason})")]
    Malformed {
        /// The parser's complaint.
        reason: String,
    },
    /// The signature does not verify over the tarball with any trusted key.
    #[error("the signature does not verify with any trusted key ({trusted}): wrong key, or altered bytes")]
    Bad {
        /// The fingerprints of the trusted keys.
        trusted: String,
    },
}
