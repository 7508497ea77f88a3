//! Official digests of known minirootfs releases, compiled in.
//!
//! A release listed here is trusted by this table, not by the mirror: a mirror that serves other bytes
//! under this name is caught even when its own `.sha256` sidecar agrees with them.
//!
//! Sources:
//! - 3.20.3 (sha256): the `.sha256` files Alpine published next to each tarball.
//! - 3.24.2 (sha512): `checksums.sha512` of Alpine's own repository for the official Docker image,
//!   github.com/alpinelinux/docker-alpine, commit 1c744e2d49059e51b063a11a6e3e18c9ccf04ab8 (the
//!   commit that imported the 3.24.2 minirootfs tarballs of every arch). For these releases the
//!   sha256 that names the cache entry comes from the mirror, and the bytes must also match this
//!   sha512 before anything is kept.

use crate::{Arch, Release};

/// The release used when nothing else is asked for (`$SANDBOX_ALPINE_VERSION` overrides it). It is in
/// the table below, so two machines that fetch the default get the same bytes.
pub const DEFAULT_RELEASE: &str = "3.24.2";

/// An official digest of a tarball.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum OfficialDigest {
    /// A sha256, lower-case hex.
    Sha256(&'static str),
    /// A sha512, lower-case hex.
    Sha512(&'static str),
}

use OfficialDigest::{Sha256, Sha512};

const TABLE: &[(&str, Arch, OfficialDigest)] = &[
    ("3.20.3", Arch::X86_64, Sha256("d4e6fd67dcf75e40c451560ac7265166c2b72a0f38ddc9aae756a7de3d1efa0c")),
    ("3.20.3", Arch::Aarch64, Sha256("041fa34a81788242df9e78fa69b97ab45b8ec47ddbf88864755610414a7bf3de")),
    ("3.20.3", Arch::Armv7, Sha256("ea8823fb4c4cf5f71f1d180e47904fb36ae74d3ded06c980230116b129fc5f07")),
    ("3.20.3", Arch::X86, Sha256("4c7ba1c9e6642692dd5cb302e5e58943221901f2e15991af7d5cb4ded80dc7b9")),
    ("3.20.3", Arch::Riscv64, Sha256("290d402a3e2770a74e86caf1e43205dbf337b9aec1610c6c6d8ffbd2d52796a1")),
    (
        "3.24.2",
        Arch::X86_64,
        Sha512(
            "bb1cbdc0395826774d8843736624c8ddc225a76de7d70e04444f5390c54986e14b2fa3ad0ca367dfa36dddfc8ebe1d2b4cbcf5cc9993e85badaf96104518f1fc",
        ),
    ),
    (
        "3.24.2",
        Arch::Aarch64,
        Sha512(
            "c717aa68d67a354c7f46488eacb459c7a80951bcd7ea255f04a574aba1a6c5144f2117866e674f27fc92df0f05dd7685c1e6824b88ddd41994803d6fb025395c",
        ),
    ),
    (
        "3.24.2",
        Arch::Armv7,
        Sha512(
            "ad0322e9d0c098def82d7660021086642018e2f77ad64d789060eba278bc32e9bf79eb011404f300eaeeb1df493797588fb640035d8064659c11159550350c2e",
        ),
    ),
    (
        "3.24.2",
        Arch::Armhf,
        Sha512(
            "35235f9d49dcdf1d8a967cd68e47a88e3d56f6c269d0da2be164eabc3d79a308126ff07fe405e34925b66a6790fcc91d6d4d8e300d3969ed41489cd255b4aa02",
        ),
    ),
    (
        "3.24.2",
        Arch::X86,
        Sha512(
            "c02a3b015be5ee43096d659f7175080682abf66496b1f6cb9f00831850569177e990b3e92918405ac37f58990a215dda77f473af5bc427f26848ed638fd64254",
        ),
    ),
    (
        "3.24.2",
        Arch::Riscv64,
        Sha512(
            "4a31df9a7408f2321fce42e54d12a75130edb04bc4feaf94354390fabfd8d7d71bbe3195cc70a19c4b2f0e54b603e9ff95d2509a0d390f2d0d468280fa3a38b4",
        ),
    ),
    (
        "3.24.2",
        Arch::Ppc64le,
        Sha512(
            "cecbc66e8489af67513d650168559c08b2c2c87fe26488e2d4601ab1b637b576172e650c5d01f5c93fe2dcc6d86bae74dec472a4114e9029e883e25c90056650",
        ),
    ),
    (
        "3.24.2",
        Arch::S390x,
        Sha512(
            "230de2f71f7de272fc835b8f83d4e1d8bfef0e3fceb4e623be3208aaa72b3ac0834a3646322a5cfa9d831f0b162c4859150bef9e21efae6b6e0c0fed7429ca3d",
        ),
    ),
];

/// The official digest of `release` for `arch`, if it is in the built-in table.
///
/// # Examples
/// ```
/// use fetch::{Arch, OfficialDigest, official_digest};
/// assert!(matches!(official_digest(&"3.24.2".parse()?, Arch::X86_64), Some(OfficialDigest::Sha512(_))));
/// # Ok::<(), fetch::Error>(())
/// ```
pub fn official_digest(release: &Release, arch: Arch) -> Option<OfficialDigest> {
    let version = release.to_string();
    TABLE.iter().find(|(v, a, _)| *v == version && *a == arch).map(|(_, _, d)| *d)
}

/// The official sha256 of `release` for `arch`, if the built-in table has one.
///
/// # Examples
/// ```
/// let d = fetch::official_sha256(&"3.20.3".parse()?, fetch::Arch::X86_64);
/// assert_eq!(d.map(|d| &d[..8]), Some("d4e6fd67"));
/// # Ok::<(), fetch::Error>(())
/// ```
pub fn official_sha256(release: &Release, arch: Arch) -> Option<&'static str> {
    match official_digest(release, arch)? {
        Sha256(d) => Some(d),
        Sha512(_) => None,
    }
}

/// The official sha512 of `release` for `arch`, if the built-in table has one.
pub(crate) fn official_sha512(release: &Release, arch: Arch) -> Option<&'static str> {
    match official_digest(release, arch)? {
        Sha512(d) => Some(d),
        Sha256(_) => None,
    }
}

/// The newest release of the built-in table that `spec` stands for on `arch`.
#[cfg_attr(not(feature = "download"), allow(dead_code))]
pub(crate) fn newest_official(spec: &crate::VersionSpec, arch: Arch) -> Option<Release> {
    TABLE
        .iter()
        .filter(|(_, a, _)| *a == arch)
        .filter_map(|(v, _, _)| v.parse::<Release>().ok())
        .filter(|r| spec.matches(r))
        .max()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_entries_are_lowercase_hex_sha256() {
        for (v, _, d) in TABLE {
            assert!(v.parse::<Release>().is_ok());
            let (d, len) = match d {
                Sha256(d) => (d, 64),
                Sha512(d) => (d, 128),
            };
            assert_eq!(d.len(), len);
            assert!(d.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        }
    }

    #[test]
    fn default_release_is_pinned_for_x86_64_and_3_20_3_stays() {
        let r: Result<Release, _> = DEFAULT_RELEASE.parse();
        assert!(r.is_ok_and(|r| official_digest(&r, Arch::X86_64).is_some()));
        let old: Result<Release, _> = "3.20.3".parse();
        assert!(old.is_ok_and(|r| official_sha256(&r, Arch::X86_64).is_some()));
    }
}
