//! What the user asked for (`3.20.3`, `3.20`, `latest-stable`) and its place in the CDN's folders.

use std::fmt;
use std::str::FromStr;

use crate::Error;

/// An Alpine version request.
///
/// # Examples
/// ```
/// use fetch::VersionSpec;
/// assert_eq!("3.20.3".parse::<VersionSpec>()?.to_string(), "3.20.3");
/// assert_eq!("3.20".parse::<VersionSpec>()?, VersionSpec::Branch(3, 20));
/// assert!("edge".parse::<VersionSpec>().is_err());
/// # Ok::<(), fetch::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VersionSpec {
    /// An exact release, e.g. `3.20.3`.
    Exact(Release),
    /// The newest patch release of a branch, e.g. `3.20`.
    Branch(u32, u32),
    /// The newest stable release (`latest-stable`).
    LatestStable,
}

/// An exact release number `major.minor.patch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Release {
    /// Major version.
    pub major: u32,
    /// Minor version (the branch).
    pub minor: u32,
    /// Patch level.
    pub patch: u32,
}

impl Release {
    /// The CDN folder of this release's branch: `v3.20`.
    pub fn branch_dir(&self) -> String {
        format!("v{}.{}", self.major, self.minor)
    }
}

impl fmt::Display for Release {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

impl FromStr for Release {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s.parse::<VersionSpec>()? {
            VersionSpec::Exact(r) => Ok(r),
            _ => Err(Error::InvalidVersion { input: s.to_owned() }),
        }
    }
}

impl VersionSpec {
    /// The CDN folder whose `latest-releases.yaml` resolves this spec.
    #[cfg_attr(not(feature = "download"), allow(dead_code))] // used to download; tested in every build
    pub(crate) fn resolve_dir(&self) -> String {
        match self {
            VersionSpec::Exact(r) => r.branch_dir(),
            VersionSpec::Branch(major, minor) => format!("v{major}.{minor}"),
            VersionSpec::LatestStable => "latest-stable".to_owned(),
        }
    }

    /// Whether `release` satisfies this spec.
    pub fn matches(&self, release: &Release) -> bool {
        match self {
            VersionSpec::Exact(r) => r == release,
            VersionSpec::Branch(major, minor) => release.major == *major && release.minor == *minor,
            VersionSpec::LatestStable => true,
        }
    }
}

impl fmt::Display for VersionSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VersionSpec::Exact(r) => r.fmt(f),
            VersionSpec::Branch(major, minor) => write!(f, "{major}.{minor}"),
            VersionSpec::LatestStable => f.write_str("latest-stable"),
        }
    }
}

impl FromStr for VersionSpec {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = || Error::InvalidVersion { input: s.to_owned() };
        let t = s.trim();
        if t == "latest-stable" {
            return Ok(VersionSpec::LatestStable);
        }
        let t = t.strip_prefix('v').unwrap_or(t);
        let parts = t
            .split('.')
            .map(|p| {
                if p.is_empty() || p.len() > 6 || !p.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(bad());
                }
                p.parse::<u32>().map_err(|_| bad())
            })
            .collect::<Result<Vec<_>, _>>()?;
        match parts[..] {
            [major, minor] => Ok(VersionSpec::Branch(major, minor)),
            [major, minor, patch] => Ok(VersionSpec::Exact(Release { major, minor, patch })),
            _ => Err(bad()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_forms() {
        assert_eq!(
            "3.20.3".parse::<VersionSpec>().ok(),
            Some(VersionSpec::Exact(Release { major: 3, minor: 20, patch: 3 }))
        );
        assert_eq!("v3.19".parse::<VersionSpec>().ok(), Some(VersionSpec::Branch(3, 19)));
        assert_eq!("latest-stable".parse::<VersionSpec>().ok(), Some(VersionSpec::LatestStable));
    }

    #[test]
    fn rejects_garbage() {
        for bad in ["", "3", "3.20.3.1", "3..1", "3.x", "edge", "+3.20", "3.20.-1", "../3.20"] {
            assert!(bad.parse::<VersionSpec>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn folders() {
        let exact: VersionSpec = "3.20.3".parse().unwrap_or(VersionSpec::LatestStable);
        assert_eq!(exact.resolve_dir(), "v3.20");
        assert_eq!(VersionSpec::LatestStable.resolve_dir(), "latest-stable");
    }

    #[test]
    fn releases_order_numerically() {
        let a: Release = "3.9.10".parse().unwrap_or(Release { major: 0, minor: 0, patch: 0 });
        let b: Release = "3.10.1".parse().unwrap_or(Release { major: 0, minor: 0, patch: 0 });
        assert!(a < b);
    }
}
