//! `--rootfs host | alpine[:VERSION] | PATH`, and the default for a program.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::Error;

/// Which root filesystem the sandbox gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootfsSpec {
    /// The host's own `/`, read-only, under the sandbox's private writable layer: the host's tools and
    /// libraries, for host-built (glibc) programs such as test binaries.
    Host,
    /// An Alpine minirootfs: `None` for `$SANDBOX_ROOTFS`, else the pinned release; or a version.
    Alpine(Option<String>),
    /// A rootfs tarball or unpacked directory.
    Path(PathBuf),
}

impl FromStr for RootfsSpec {
    type Err = Error;

    fn from_str(text: &str) -> Result<RootfsSpec, Error> {
        match text {
            "" => Err(Error::Option {
                option: "rootfs",
                value: String::new(),
                expected: "host, alpine[:VERSION] or PATH",
            }),
            "host" => Ok(RootfsSpec::Host),
            "alpine" => Ok(RootfsSpec::Alpine(None)),
            _ => match text.strip_prefix("alpine:") {
                Some(v) if !v.is_empty() => Ok(RootfsSpec::Alpine(Some(v.to_owned()))),
                _ => Ok(RootfsSpec::Path(PathBuf::from(text))),
            },
        }
    }
}

/// Folders whose programs exist in an Alpine rootfs too: a program named there (or by a bare name)
/// runs on Alpine by default.
const SYSTEM_DIRS: [&str; 6] = ["/bin/", "/sbin/", "/usr/bin/", "/usr/sbin/", "/usr/local/bin/", "/usr/local/sbin/"];

impl RootfsSpec {
    /// The default for `program`: `host` for a program given as a path that exists on the host outside
    /// the system folders (a test binary, `./script`), `alpine` otherwise (`sh`, `/bin/busybox`).
    pub fn default_for(program: &str) -> RootfsSpec {
        let is_path = program.contains('/');
        let system = SYSTEM_DIRS.iter().any(|d| program.starts_with(d));
        if is_path && !system && Path::new(program).exists() { RootfsSpec::Host } else { RootfsSpec::Alpine(None) }
    }
}

/// The rootfs, ready to build a sandbox on.
#[derive(Debug)]
pub enum Resolved {
    /// The host's `/`.
    Host,
    /// A verified, unpacked tree.
    Tree(sandbox::fetch::Rootfs),
}

impl Resolved {
    /// Fetches (from the cache when it can) or opens what `spec` names.
    ///
    /// # Errors
    /// [`Error::Rootfs`] when it cannot be fetched or opened.
    pub fn get(spec: &RootfsSpec) -> Result<Resolved, Error> {
        use sandbox::fetch;
        let tree = match spec {
            RootfsSpec::Host => return Ok(Resolved::Host),
            RootfsSpec::Alpine(None) => fetch::default_rootfs(),
            RootfsSpec::Alpine(Some(v)) => fetch::Alpine::new(v).fetch(),
            RootfsSpec::Path(p) if p.is_dir() => fetch::Rootfs::from_dir(p),
            RootfsSpec::Path(p) => fetch::Rootfs::from_tarball(p),
        };
        tree.map(Resolved::Tree).map_err(Error::Rootfs)
    }

    /// Whether this is the host's `/`.
    pub fn is_host(&self) -> bool {
        matches!(self, Resolved::Host)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs() {
        assert_eq!("host".parse::<RootfsSpec>().ok(), Some(RootfsSpec::Host));
        assert_eq!("alpine".parse::<RootfsSpec>().ok(), Some(RootfsSpec::Alpine(None)));
        assert_eq!("alpine:3.20".parse::<RootfsSpec>().ok(), Some(RootfsSpec::Alpine(Some("3.20".into()))));
        assert_eq!("./r.tar.gz".parse::<RootfsSpec>().ok(), Some(RootfsSpec::Path("./r.tar.gz".into())));
        assert!("".parse::<RootfsSpec>().is_err());
    }

    #[test]
    fn defaults_by_program() {
        assert_eq!(RootfsSpec::default_for("sh"), RootfsSpec::Alpine(None));
        assert_eq!(RootfsSpec::default_for("/bin/sh"), RootfsSpec::Alpine(None));
        assert_eq!(RootfsSpec::default_for("/usr/bin/env"), RootfsSpec::Alpine(None));
        let exe = std::env::current_exe().map(|p| p.display().to_string()).unwrap_or_default();
        assert_eq!(RootfsSpec::default_for(&exe), RootfsSpec::Host);
        assert_eq!(RootfsSpec::default_for("/no/such/program"), RootfsSpec::Alpine(None));
    }
}
