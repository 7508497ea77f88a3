//! The checks of sandbox settings, in one place: `#[sandbox_test]` runs them at compile time (a bad
//! option is a compile error at its tokens) and `sandbox::Builder` at run time, so that the two can
//! never disagree. Each check returns why a value is refused, as a phrase that follows the value in a
//! message ("invalid hostname `a..b`: must not …").

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::path::{Component, Path};

/// A hostname: 1 to 64 bytes (sethostname(2)) of ASCII letters, digits, `-` and `.` (RFC 1123), not
/// starting or ending with `-` or `.`, without an empty label (`..`).
///
/// # Errors
/// Why the name is refused.
///
/// # Examples
/// ```
/// assert!(sandbox_validate::hostname("db-1.test").is_ok());
/// assert!(sandbox_validate::hostname("a..b").is_err());
/// ```
pub fn hostname(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.len() > 64 {
        return Err("must be 1 to 64 bytes long (sethostname(2))");
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.') {
        return Err("may contain only ASCII letters, digits, `-` and `.` (RFC 1123)");
    }
    if name.starts_with(['-', '.']) || name.ends_with(['-', '.']) || name.contains("..") {
        return Err("must not start or end with `-` or `.`, nor contain `..`");
    }
    Ok(())
}

/// A path inside the sandbox: absolute, without NUL and without `..`.
///
/// # Errors
/// Why the path is refused.
///
/// # Examples
/// ```
/// assert!(sandbox_validate::path_inside("/srv/data").is_ok());
/// assert!(sandbox_validate::path_inside("/srv/../etc").is_err());
/// ```
pub fn path_inside(path: &str) -> Result<(), &'static str> {
    if path.contains('\0') {
        return Err("contains a NUL byte");
    }
    let p = Path::new(path);
    if !p.is_absolute() {
        return Err("must be an absolute path inside the sandbox");
    }
    if p.components().any(|c| c == Component::ParentDir) {
        return Err("must not contain `..`");
    }
    Ok(())
}

/// An environment variable's name: non-empty, without `=` or NUL.
///
/// # Errors
/// Why the name is refused.
pub fn env_key(key: &str) -> Result<(), &'static str> {
    if key.is_empty() || key.contains(['=', '\0']) {
        return Err("must be non-empty, without `=` or NUL");
    }
    Ok(())
}

/// An environment variable's value: without NUL.
///
/// # Errors
/// Why the value is refused.
pub fn env_value(value: &str) -> Result<(), &'static str> {
    if value.contains('\0') {
        return Err("must not contain NUL");
    }
    Ok(())
}

/// A number of CPUs for a CPU limit: from 0.01 to 65536 (past that the quota leaves the range the
/// kernel takes, and no machine has as many).
///
/// # Errors
/// Why the number is refused.
pub fn cpus(cpus: f64) -> Result<(), &'static str> {
    if cpus.is_finite() && (0.01..=65536.0).contains(&cpus) {
        Ok(())
    } else {
        Err("must be a number of CPUs from 0.01 to 65536")
    }
}

/// A memory limit, in bytes: at least 1 MiB, which a sandbox's own processes need to start (below
/// it, setup itself is OOM-killed).
///
/// # Errors
/// Why the limit is refused.
pub fn memory_limit(bytes: u64) -> Result<(), &'static str> {
    if bytes >= 1 << 20 {
        Ok(())
    } else {
        Err("must be at least 1 MiB (1M), which the sandbox's own processes need to start")
    }
}

/// The most a tmpfs may be given: 1 PiB. tmpfs(5) rounds `size=` up to whole pages, and a size within
/// a page of 2^64 wraps to 0, which it reads as no limit at all.
pub const MAX_TMPFS_SIZE: u64 = 1 << 50;

/// The size of a tmpfs volume, in bytes: above zero (tmpfs(5) reads 0 as no limit) and at most
/// [`MAX_TMPFS_SIZE`].
///
/// # Errors
/// Why the size is refused.
pub fn tmpfs_size(bytes: u64) -> Result<(), &'static str> {
    match bytes {
        0 => Err("must be above zero (tmpfs(5) reads size 0 as no limit)"),
        b if b > MAX_TMPFS_SIZE => Err("must be at most 1 PiB (1P)"),
        _ => Ok(()),
    }
}

/// The size of a sandbox's writable layer and `/tmp`, in bytes: at least 1 MiB, room for the files
/// setup writes (`/etc/hostname`, `/etc/hosts`, ...), and at most [`MAX_TMPFS_SIZE`].
///
/// # Errors
/// Why the size is refused.
pub fn writable_size(bytes: u64) -> Result<(), &'static str> {
    if bytes < 1 << 20 {
        return Err("must be at least 1 MiB (1M), room for the files setup writes");
    }
    tmpfs_size(bytes)
}

/// A pids limit: from 2 (the sandbox's init counts, and the program) to 4194304 (the kernel's
/// `PID_MAX_LIMIT` on 64-bit machines).
///
/// # Errors
/// Why the limit is refused.
pub fn pids_limit(pids: u64) -> Result<(), &'static str> {
    if (2..=1 << 22).contains(&pids) {
        Ok(())
    } else {
        Err("must be from 2 (the sandbox's init counts, and the program) to 4194304 (the kernel's most)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostnames() {
        assert!(hostname("db-1.test").is_ok());
        assert!(hostname(&"a".repeat(64)).is_ok());
        for bad in ["", "-a", "a-", "a b", "a_b", "ä", "a..b", ".a", &"a".repeat(65)] {
            assert!(hostname(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn paths_and_env() {
        assert!(path_inside("/root").is_ok());
        assert!(path_inside("root").is_err());
        assert!(path_inside("/root/../etc").is_err());
        assert!(path_inside("/a\0").is_err());
        assert!(env_key("A").is_ok() && env_value("b").is_ok());
        assert!(env_key("A=B").is_err() && env_key("").is_err());
        assert!(env_value("b\0").is_err());
        assert!(cpus(0.5).is_ok() && cpus(0.001).is_err() && cpus(f64::NAN).is_err() && cpus(1e30).is_err());
        assert!(memory_limit(1 << 20).is_ok() && memory_limit((1 << 20) - 1).is_err());
        assert!(writable_size(1 << 20).is_ok() && writable_size((1 << 20) - 1).is_err());
        // The second outside review of writable_size: u64::MAX wrapped to size=0 in the kernel, no limit.
        assert!(writable_size(MAX_TMPFS_SIZE).is_ok() && writable_size(u64::MAX).is_err());
        assert!(tmpfs_size(1).is_ok() && tmpfs_size(0).is_err() && tmpfs_size(u64::MAX - 4095).is_err());
        assert!(
            pids_limit(2).is_ok()
                && pids_limit(1 << 22).is_ok()
                && pids_limit(1).is_err()
                && pids_limit((1 << 22) + 1).is_err()
        );
    }
}

/// A size written in bytes (`4096`) or with a binary unit (`512K`, `64M`, `2G`, `1T`, `1P`; also `k`, `KiB`,
/// and so on), surrounding spaces allowed; `None` if malformed or past 2^64. Zero is a size here: each
/// setting's own check says whether it takes it. Used by `#[sandbox_test(memory = …)]` and the other
/// size options, and by `sandbox-run`'s.
pub fn size_bytes(s: &str) -> Option<u64> {
    let s = s.trim();
    let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let shift = match unit {
        "" => 0,
        "K" | "k" | "KiB" => 10,
        "M" | "m" | "MiB" => 20,
        "G" | "g" | "GiB" => 30,
        "T" | "t" | "TiB" => 40,
        "P" | "p" | "PiB" => 50,
        _ => return None,
    };
    digits.parse::<u64>().ok()?.checked_mul(1 << shift)
}

#[cfg(test)]
mod size_tests {
    use super::size_bytes;

    #[test]
    fn sizes() {
        assert_eq!(size_bytes("4096"), Some(4096));
        assert_eq!(size_bytes("512k"), Some(512 << 10));
        assert_eq!(size_bytes(" 16M "), Some(16 << 20));
        assert_eq!(size_bytes("3MiB"), Some(3 << 20));
        assert_eq!(size_bytes("2G"), Some(2 << 30));
        assert_eq!(size_bytes("1T"), Some(1 << 40));
        assert_eq!(size_bytes("1P"), Some(super::MAX_TMPFS_SIZE));
        assert_eq!(size_bytes("0M"), Some(0));
        for bad in ["", "M", "lots", "2GB", "1.5G", "-1", "1 G", "18446744073709551615K"] {
            assert_eq!(size_bytes(bad), None, "{bad:?}");
        }
    }
}

/// A duration written `500ms`, `20s`, `2m` (also `min`) or `1h`, in milliseconds; `None` if malformed or
/// zero. Used by `#[sandbox_test(timeout = …)]` and `$SANDBOX_TEST_TIMEOUT`.
pub fn duration_ms(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit())?);
    let n: u64 = num.parse().ok()?;
    let ms = match unit {
        "ms" => n,
        "s" => n.checked_mul(1000)?,
        "m" | "min" => n.checked_mul(60_000)?,
        "h" => n.checked_mul(3_600_000)?,
        _ => return None,
    };
    (ms > 0).then_some(ms)
}

#[cfg(test)]
mod duration_tests {
    use super::duration_ms;

    #[test]
    fn durations() {
        assert_eq!(duration_ms("20s"), Some(20_000));
        assert_eq!(duration_ms("500ms"), Some(500));
        assert_eq!(duration_ms("2m"), Some(120_000));
        assert_eq!(duration_ms("1h"), Some(3_600_000));
        assert_eq!(duration_ms("0s"), None);
        assert_eq!(duration_ms("20"), None);
        assert_eq!(duration_ms("5 minutes"), None);
        assert_eq!(duration_ms("s"), None);
    }
}
