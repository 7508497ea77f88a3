//! Checking a detached signature with pgp (the `download` feature).

use std::io::Read;

use pgp::composed::{Deserializable, DetachedSignature, SignedPublicKey};
use pgp::types::KeyDetails;

#[cfg(test)]
use super::ALPINE_KEY_FINGERPRINT;
use super::SignatureProblem;

/// Alpine's release signing key, armored.
pub(crate) const ALPINE_KEY: &str = include_str!("../../keys/ncopa.asc");

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
