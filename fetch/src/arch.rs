//! Alpine's architecture names.

use std::fmt;
use std::str::FromStr;

use crate::Error;

/// A CPU architecture, named as Alpine names its release folders.
///
/// # Examples
/// ```
/// use fetch::Arch;
/// assert_eq!("aarch64".parse::<Arch>()?, Arch::Aarch64);
/// assert_eq!(Arch::Armv7.to_string(), "armv7");
/// # Ok::<(), fetch::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(into = "String", try_from = "String")]
#[non_exhaustive]
pub enum Arch {
    /// 64-bit x86 (`x86_64`).
    X86_64,
    /// 32-bit x86 (`x86`).
    X86,
    /// 64-bit ARM (`aarch64`).
    Aarch64,
    /// 32-bit ARMv7 with hard float (`armv7`).
    Armv7,
    /// 32-bit ARMv6 with hard float (`armhf`).
    Armhf,
    /// 64-bit little-endian POWER (`ppc64le`).
    Ppc64le,
    /// IBM Z (`s390x`).
    S390x,
    /// 64-bit RISC-V (`riscv64`).
    Riscv64,
    /// 64-bit LoongArch (`loongarch64`).
    Loongarch64,
}

const ALL: [Arch; 9] = [
    Arch::X86_64,
    Arch::X86,
    Arch::Aarch64,
    Arch::Armv7,
    Arch::Armhf,
    Arch::Ppc64le,
    Arch::S390x,
    Arch::Riscv64,
    Arch::Loongarch64,
];
const KNOWN: &str = "x86_64, x86, aarch64, armv7, armhf, ppc64le, s390x, riscv64, loongarch64";

impl Arch {
    /// Alpine's name for this architecture, as used in URLs and file names.
    pub fn as_str(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::X86 => "x86",
            Arch::Aarch64 => "aarch64",
            Arch::Armv7 => "armv7",
            Arch::Armhf => "armhf",
            Arch::Ppc64le => "ppc64le",
            Arch::S390x => "s390x",
            Arch::Riscv64 => "riscv64",
            Arch::Loongarch64 => "loongarch64",
        }
    }

    /// The architecture this program was compiled for, if Alpine publishes it.
    pub fn host() -> Option<Arch> {
        match std::env::consts::ARCH {
            "x86_64" => Some(Arch::X86_64),
            "x86" => Some(Arch::X86),
            "aarch64" => Some(Arch::Aarch64),
            // Alpine's armv7 is the closest match for a 32-bit ARM host.
            "arm" => Some(Arch::Armv7),
            "powerpc64" if cfg!(target_endian = "little") => Some(Arch::Ppc64le),
            "s390x" => Some(Arch::S390x),
            "riscv64" => Some(Arch::Riscv64),
            "loongarch64" => Some(Arch::Loongarch64),
            _ => None,
        }
    }

    /// Every architecture Alpine publishes minirootfs tarballs for.
    pub fn all() -> &'static [Arch] {
        &ALL
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Arch {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ALL.iter()
            .copied()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| Error::UnknownArch { name: s.to_owned(), known: KNOWN })
    }
}

impl From<Arch> for String {
    fn from(a: Arch) -> String {
        a.as_str().to_owned()
    }
}

impl TryFrom<String> for Arch {
    type Error = Error;
    fn try_from(s: String) -> Result<Self, Error> {
        s.parse()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for a in Arch::all() {
            assert_eq!(a.as_str().parse::<Arch>().ok(), Some(*a));
        }
    }

    #[test]
    fn unknown_name_lists_known_ones() {
        let err = "amd64".parse::<Arch>().err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("`amd64`") && err.contains("x86_64"), "{err}");
    }

    #[test]
    fn host_is_known_here() {
        assert!(Arch::host().is_some());
    }
}
