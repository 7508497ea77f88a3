//! OpenPGP detached signatures (`<tarball>.asc`) over release tarballs, checked in pure Rust.
//!
//! Alpine signs every release with Natanael Copa's key, fingerprint
//! `0482 D840 22F5 2DF1 C4E7 CD43 293A CD09 07D9 495A` (printed on alpinelinux.org/downloads). The key
//! block in `keys/ncopa.asc` is the one Alpine publishes at `https://alpinelinux.org/keys/ncopa.asc`;
//! the copy here was taken from a public project that embeds it verbatim (JLM AlpineBuilder,
//! `Command/Download.php`, constant `ALPINE_GPG_PUBLIC_KEY`), and a test checks its fingerprint, so a
//! wrong or altered block cannot pass unnoticed.

use std::io::Read;

use pgp::composed::{Deserializable, DetachedSignature, SignedPublicKey};
use pgp::types::KeyDetails;

/// Alpine's release signing key, armored.
pub(crate) const ALPINE_KEY: &str = include_str!("../keys/ncopa.asc");

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

/// A public key parsed from an armored block.
#[derive(Debug, Clone)]
pub(crate) struct TrustedKey {
    key: SignedPublicKey,
}

impl TrustedKey {
    pub(crate) fn from_armor(armored: &str) -> Result<TrustedKey, String> {
        let (key, _) = SignedPublicKey::from_string(armored).map_err(|e| e.to_string())?;
        Ok(TrustedKey { key })
    }

    pub(crate) fn fingerprint(&self) -> String {
        hex::encode_upper(self.key.fingerprint().as_bytes())
    }
}

/// Alpine's key, and any test key handed to [`crate::Alpine::test_signing_key`].
pub(crate) fn trusted_keys(extra: &[String]) -> Result<Vec<TrustedKey>, SignatureProblem> {
    std::iter::once(ALPINE_KEY)
        .chain(extra.iter().map(String::as_str))
        .map(|armored| TrustedKey::from_armor(armored).map_err(|reason| SignatureProblem::Malformed { reason }))
        .collect()
}

/// Checks the armored detached `signature` over `data` against `keys`; returns the signer's fingerprint.
pub(crate) fn verify(
    signature: &str,
    data: &dyn Fn() -> Option<Box<dyn Read>>,
    keys: &[TrustedKey],
) -> Result<String, SignatureProblem> {
    let (sig, _) =
        DetachedSignature::from_string(signature).map_err(|e| SignatureProblem::Malformed { reason: e.to_string() })?;
    for key in keys {
        let Some(reader) = data() else { continue };
        if sig.signature.verify(&key.key, reader).is_ok() {
            return Ok(key.fingerprint());
        }
    }
    Err(SignatureProblem::Bad { trusted: keys.iter().map(TrustedKey::fingerprint).collect::<Vec<_>>().join(", ") })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_alpine_key_has_the_published_fingerprint() {
        let key = TrustedKey::from_armor(ALPINE_KEY).map(|k| k.fingerprint());
        assert_eq!(key.as_deref(), Ok(ALPINE_KEY_FINGERPRINT));
    }

    #[test]
    fn garbage_is_malformed() {
        let keys = trusted_keys(&[]).unwrap_or_default();
        let r = verify("not a signature", &|| Some(Box::new(&b"x"[..])), &keys);
        assert!(matches!(r, Err(SignatureProblem::Malformed { .. })), "{r:?}");
    }
}
