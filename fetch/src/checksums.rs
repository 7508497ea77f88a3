//! Official sha256 digests of known minirootfs releases, compiled in.
//!
//! A release listed here is trusted by this table, not by the mirror: a mirror that serves other bytes
//! under this name is caught even when its own `.sha256` sidecar agrees with them. The digests are those
//! Alpine published next to each tarball.

use crate::{Arch, Release};

/// The release used when nothing else is asked for (`$SANDBOX_ALPINE_VERSION` overrides it). It is in
/// the table below, so two machines that fetch the default get the same bytes.
pub const DEFAULT_RELEASE: &str = "3.20.3";

const TABLE: &[(&str, Arch, &str)] = &[
    ("3.20.3", Arch::X86_64, "d4e6fd67dcf75e40c451560ac7265166c2b72a0f38ddc9aae756a7de3d1efa0c"),
    ("3.20.3", Arch::Aarch64, "041fa34a81788242df9e78fa69b97ab45b8ec47ddbf88864755610414a7bf3de"),
    ("3.20.3", Arch::Armv7, "ea8823fb4c4cf5f71f1d180e47904fb36ae74d3ded06c980230116b129fc5f07"),
    ("3.20.3", Arch::X86, "4c7ba1c9e6642692dd5cb302e5e58943221901f2e15991af7d5cb4ded80dc7b9"),
    ("3.20.3", Arch::Riscv64, "290d402a3e2770a74e86caf1e43205dbf337b9aec1610c6c6d8ffbd2d52796a1"),
];

/// The official digest of `release` for `arch`, if it is in the built-in table.
///
/// # Examples
/// ```
/// let d = fetch::official_sha256(&"3.20.3".parse()?, fetch::Arch::X86_64);
/// assert_eq!(d.map(|d| &d[..8]), Some("d4e6fd67"));
/// # Ok::<(), fetch::Error>(())
/// ```
pub fn official_sha256(release: &Release, arch: Arch) -> Option<&'static str> {
    let version = release.to_string();
    TABLE.iter().find(|(v, a, _)| *v == version && *a == arch).map(|(_, _, d)| *d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_entries_are_lowercase_hex_sha256() {
        for (v, _, d) in TABLE {
            assert!(v.parse::<Release>().is_ok());
            assert_eq!(d.len(), 64);
            assert!(d.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        }
    }

    #[test]
    fn default_release_is_pinned_for_x86_64() {
        let r: Result<Release, _> = DEFAULT_RELEASE.parse();
        assert!(r.is_ok_and(|r| official_sha256(&r, Arch::X86_64).is_some()));
    }
}
