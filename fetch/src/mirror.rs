//! The Alpine CDN's layout: where a release's tarball, its `.sha256` sidecar and a folder's
//! `latest-releases.yaml` live, and how to read the latter two.
//!
//! `{mirror}/v3.20/releases/x86_64/alpine-minirootfs-3.20.3-x86_64.tar.gz`
//! `{mirror}/v3.20/releases/x86_64/alpine-minirootfs-3.20.3-x86_64.tar.gz.sha256`
//! `{mirror}/v3.20/releases/x86_64/latest-releases.yaml` (and `latest-stable/` in place of `v3.20/`)

// Without the `download` feature only the URLs and digests a fetch records or checks are used, not the
// parsers of what a mirror serves; their tests run in every build.
#![cfg_attr(not(feature = "download"), allow(dead_code))]

use crate::{Arch, Error, Release, VersionSpec};

/// The Alpine CDN, used when neither `.mirror()` nor `$SANDBOX_ALPINE_MIRROR` says otherwise.
pub const DEFAULT_MIRROR: &str = "https://dl-cdn.alpinelinux.org/alpine";

/// `url` as errors show it: the password of its user information, if any, replaced by `***`
/// (`https://ci:secret@mirror.example/` shows as `https://ci:***@mirror.example/`; a token alone,
/// `https://token@…`, as `https://***@…`), as CI logs are often public.
pub(crate) fn shown(url: &str) -> std::borrow::Cow<'_, str> {
    match user_information(url) {
        Some((start, at)) => format!("{}{}{}", &url[..start], hidden(&url[start..at]), &url[at..]).into(),
        None => url.into(),
    }
}

/// `url` as the cache keys and compares it: as [`shown`] shows it (no password), its scheme and host
/// in lower case (both are case-insensitive), without the scheme's default port (`:80`, `:443`) and
/// without trailing slashes. `HTTPS://Mirror.Example:443/alpine/` and `https://mirror.example/alpine`
/// are one mirror to the index: a range's newest release seen under one spelling is held against an
/// older one served under another (the downgrade check keyed the index by the URL as spelled).
pub(crate) fn canonical(url: &str) -> String {
    let shown = shown(url);
    let start = authority_start(&shown);
    let rest = &shown[start..];
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let (user, host_port) = match authority.rfind('@') {
        Some(at) => authority.split_at(at + 1),
        None => ("", authority),
    };
    let scheme = shown[..start].to_ascii_lowercase();
    // The port's colon is the last one past an IPv6 literal's closing bracket.
    let port_at = host_port.rfind(':').filter(|&c| host_port.rfind(']').is_none_or(|b| c > b));
    let (host, port) = host_port.split_at(port_at.unwrap_or(host_port.len()));
    let port = match (scheme.as_str(), port) {
        ("http://", ":80") | ("https://", ":443") => "",
        _ => port,
    };
    format!("{scheme}{user}{}{port}{}", host.to_ascii_lowercase(), path.trim_end_matches('/'))
}

/// `text` with every occurrence of the user information of `url` (its `user:password@`) as
/// [`shown`] shows it: for messages of other libraries that may quote the URL.
pub(crate) fn hidden_in(text: &str, url: &str) -> String {
    match user_information(url) {
        Some((start, at)) if at > start => text.replace(&url[start..at], &hidden(&url[start..at])),
        _ => text.to_owned(),
    }
}

/// A mirror URL that [`checked`] refused, as its error shows it: everything from the scheme's `://`
/// (or the start) up to its last `@` replaced by `***`, and cut before a `?query` or `#fragment`
/// (`…` in their place), where a password or a token may sit however the URL is spelled.
pub(crate) fn shown_refused(url: &str) -> String {
    let start = authority_start(url);
    let masked = match url[start..].rfind('@') {
        Some(at) => format!("{}***{}", &url[..start], &url[start + at..]),
        None => url.to_owned(),
    };
    match masked.find(['?', '#']) {
        Some(at) => format!("{}{}…", &masked[..at], &masked[at..=at]),
        None => masked,
    }
}

/// `mirror` if it is a base folder URL: `http://` or `https://` (any case), then an authority with
/// at most one `@` (an `@` or `/` in a password is percent-encoded), and no `?query`, `#fragment`,
/// backslash, space or control character (the paths appended to it would land in a query, a token
/// there would show in errors, and a URL parser reads a backslash or an `@` further on otherwise than
/// this check would: the thirtieth and thirty-first outside reviews).
pub(crate) fn checked(mirror: String) -> Result<String, Error> {
    let (scheme, after_scheme) = mirror.split_once("://").unwrap_or(("", ""));
    let authority = &after_scheme[..after_scheme.find('/').unwrap_or(after_scheme.len())];
    let ats = authority.matches('@').count();
    let reason = if !matches!(scheme.to_ascii_lowercase().as_str(), "http" | "https") {
        "it must start with http:// or https://"
    } else if mirror.contains(['?', '#']) {
        "a query (`?`) or fragment (`#`) has no place in it; credentials go in `https://user:password@host/…`"
    } else if mirror.contains(|c: char| c == '\\' || c.is_whitespace() || c.is_control()) {
        "a backslash, space or control character has no place in it"
    } else if after_scheme.matches('@').count() > ats || ats > 1 {
        "an `@` past the host, or more than one, is ambiguous: percent-encode an `@` or `/` in a password (%40, %2F)"
    } else {
        return Ok(mirror);
    };
    Err(Error::InvalidMirror { mirror, reason })
}

/// Where `url`'s user information is: from the start of its authority (after the scheme's `://`, or
/// the start where there is none) to its `@` (excluded).
fn user_information(url: &str) -> Option<(usize, usize)> {
    let start = authority_start(url);
    let rest = &url[start..];
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    authority.rfind('@').map(|at| (start, start + at))
}

/// Where `url`'s authority starts: after the scheme's `://`, or at the start where there is none.
fn authority_start(url: &str) -> usize {
    url.find("://").map_or(0, |i| i + 3)
}

/// User information as shown: `user:***`, or `***` for a token alone.
fn hidden(user_information: &str) -> String {
    match user_information.split_once(':') {
        Some((user, _)) => format!("{user}:***"),
        None => "***".to_owned(),
    }
}

/// The file name of a release's minirootfs tarball.
pub(crate) fn tarball_name(release: &Release, arch: Arch) -> String {
    format!("alpine-minirootfs-{release}-{arch}.tar.gz")
}

/// The folder of `dir` (`v3.20` or `latest-stable`) for `arch` on `mirror`, without a trailing slash.
fn releases_url(mirror: &str, dir: &str, arch: Arch) -> String {
    format!("{}/{dir}/releases/{arch}", mirror.trim_end_matches('/'))
}

/// The tarball URL of an exact release.
pub(crate) fn tarball_url(mirror: &str, release: &Release, arch: Arch) -> String {
    format!("{}/{}", releases_url(mirror, &release.branch_dir(), arch), tarball_name(release, arch))
}

/// The `latest-releases.yaml` that resolves `spec`.
pub(crate) fn yaml_url(mirror: &str, spec: &VersionSpec, arch: Arch) -> String {
    format!("{}/latest-releases.yaml", releases_url(mirror, &spec.resolve_dir(), arch))
}

/// One `alpine-minirootfs` entry of a `latest-releases.yaml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct YamlEntry {
    pub release: Release,
    pub file: String,
    pub sha256: Option<String>,
}

/// The newest `alpine-minirootfs` entry of `text` for `arch` that satisfies `spec`.
///
/// The file is a YAML list of maps; entries of other flavors, of other arches, or lacking a version or
/// file name are passed over (real files have entries with missing fields).
pub(crate) fn parse_latest_releases(text: &str, spec: &VersionSpec, arch: Arch, url: &str) -> Result<YamlEntry, Error> {
    let resolve_err = |reason: String| Error::Resolve { spec: spec.to_string(), url: url.to_owned(), reason };
    let doc: serde_norway::Value =
        serde_norway::from_str(text).map_err(|e| resolve_err(format!("not valid YAML: {e}")))?;
    let list = doc.as_sequence().ok_or_else(|| resolve_err("the document is not a YAML list".to_owned()))?;
    let text_of = |v: &serde_norway::Value| match v {
        serde_norway::Value::String(s) => Some(s.clone()),
        serde_norway::Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    let mut best: Option<YamlEntry> = None;
    for item in list {
        let field = |name: &str| item.get(name).and_then(text_of);
        if field("flavor").as_deref() != Some("alpine-minirootfs") {
            continue;
        }
        if field("arch").is_some_and(|a| a != arch.as_str()) {
            continue;
        }
        let (Some(version), Some(file)) = (field("version"), field("file")) else { continue };
        let Ok(release) = version.parse::<Release>() else { continue };
        // A name with a control character (a terminal escape) would reach errors as it is (the
        // twenty-sixth outside review printed one raw on stderr).
        if !spec.matches(&release) || file.contains('/') || file.starts_with('.') || file.chars().any(char::is_control)
        {
            continue;
        }
        let sha256 = field("sha256").map(|s| s.to_ascii_lowercase());
        if best.as_ref().is_none_or(|b| release > b.release) {
            best = Some(YamlEntry { release, file, sha256 });
        }
    }
    best.ok_or_else(|| resolve_err(format!("it lists no alpine-minirootfs release for {arch} matching `{spec}`")))
}

/// The digest in a `sha256sum`-format sidecar (`<64 hex>  <file name>`).
pub(crate) fn parse_sidecar(text: &str, url: &str) -> Result<String, Error> {
    let first = text.split_whitespace().next().unwrap_or_default();
    check_digest(first, url)
}

/// `value` as a lower-case sha256 hex digest, or an error naming where it came from.
pub(crate) fn check_digest(value: &str, origin: &str) -> Result<String, Error> {
    let lower = value.trim().to_ascii_lowercase();
    if lower.len() == 64 && lower.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(lower)
    } else {
        Err(Error::InvalidDigest { value: value.to_owned(), origin: origin.to_owned() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_mirror_spelled_many_ways_is_one_key() {
        let one = "https://mirror.example/alpine";
        for spelling in [
            "https://mirror.example/alpine/",
            "HTTPS://Mirror.EXAMPLE/alpine",
            "https://mirror.example:443/alpine//",
            "https://ci:secret@mirror.example/alpine",
        ] {
            let expected = if spelling.contains('@') { "https://ci:***@mirror.example/alpine" } else { one };
            assert_eq!(canonical(spelling), expected, "{spelling}");
        }
        assert_eq!(canonical("http://[::1]:80/a/"), "http://[::1]/a");
        assert_eq!(canonical("http://[::1]:8080/a"), "http://[::1]:8080/a");
        assert_eq!(canonical("http://127.0.0.1:443/a"), "http://127.0.0.1:443/a", "not http's default port");
        assert_eq!(canonical("https://m.example/Alpine"), "https://m.example/Alpine", "a path keeps its case");
    }

    const YAML: &str = r#"---
-
  title: "Netboot"
  flavor: alpine-netboot
  version: 3.20.3
  file: alpine-netboot-3.20.3-x86_64.tar.gz
-
  title: "Mini root filesystem"
  desc: "Minimal root filesystem.
    For use in containers"
  branch: v3.20
  arch: x86_64
  version: 3.20.3
  flavor: alpine-minirootfs
  file: alpine-minirootfs-3.20.3-x86_64.tar.gz
  date: 2024-09-06
  time: 11:57:34
  size: 3490290
  sha256: D4E6FD67DCF75E40C451560AC7265166C2B72A0F38DDC9AAE756A7DE3D1EFA0C
-
  flavor: alpine-minirootfs
  arch: x86_64
  file: alpine-minirootfs-3.20.2-x86_64.tar.gz
  version: 3.20.2
-
  flavor: alpine-minirootfs
  version: 3.20.9
"#;

    #[test]
    fn picks_the_newest_complete_minirootfs_entry() {
        let e = parse_latest_releases(YAML, &VersionSpec::Branch(3, 20), Arch::X86_64, "u");
        let e = e.ok();
        assert_eq!(e.as_ref().map(|e| e.release.to_string()), Some("3.20.3".to_owned()));
        assert_eq!(e.as_ref().map(|e| e.file.as_str()), Some("alpine-minirootfs-3.20.3-x86_64.tar.gz"));
        assert_eq!(
            e.and_then(|e| e.sha256),
            Some("d4e6fd67dcf75e40c451560ac7265166c2b72a0f38ddc9aae756a7de3d1efa0c".to_owned())
        );
    }

    #[test]
    fn other_arch_and_missing_entries_are_errors() {
        let r = parse_latest_releases(YAML, &VersionSpec::Branch(3, 20), Arch::Aarch64, "u");
        assert!(matches!(r, Err(Error::Resolve { .. })), "{r:?}");
        let r = parse_latest_releases("just text", &VersionSpec::LatestStable, Arch::X86_64, "u");
        assert!(matches!(r, Err(Error::Resolve { .. })), "{r:?}");
    }

    /// The twenty-sixth outside review: a `file` with a terminal escape reached stderr raw.
    #[test]
    fn a_file_name_with_a_control_character_is_skipped() {
        let yaml = "- {flavor: alpine-minirootfs, arch: x86_64, version: 3.20.3, file: \"a\\e[2Kb.tar.gz\"}\n";
        let r = parse_latest_releases(yaml, &VersionSpec::LatestStable, Arch::X86_64, "u");
        assert!(matches!(r, Err(Error::Resolve { .. })), "{r:?}");
    }

    #[test]
    fn sidecar_format() {
        let d = "d4e6fd67dcf75e40c451560ac7265166c2b72a0f38ddc9aae756a7de3d1efa0c";
        assert_eq!(parse_sidecar(&format!("{d}  alpine.tar.gz\n"), "u").ok().as_deref(), Some(d));
        assert!(parse_sidecar("<html>404</html>", "u").is_err());
        assert!(parse_sidecar("", "u").is_err());
    }

    #[test]
    fn a_url_s_password_is_not_shown() {
        assert_eq!(shown("https://ci:secret@mirror.example/alpine/"), "https://ci:***@mirror.example/alpine/");
        assert_eq!(shown("https://token@mirror.example"), "https://***@mirror.example");
        assert_eq!(shown("http://127.0.0.1:8080/a@b"), "http://127.0.0.1:8080/a@b");
        assert_eq!(shown("https://u:p@h/x?y=@z"), "https://u:***@h/x?y=@z");
        assert_eq!(shown("not a url"), "not a url");
        // Without a scheme (the thirtieth outside review: `ci:s3cret@host/alpine` showed as given).
        assert_eq!(shown("ci:s3cret@127.0.0.1:1/alpine"), "ci:***@127.0.0.1:1/alpine");
        let quoted = "error sending request for url (https://ci:secret@mirror.example/alpine/x)";
        let hidden = hidden_in(quoted, "https://ci:secret@mirror.example/alpine");
        assert_eq!(hidden, "error sending request for url (https://ci:***@mirror.example/alpine/x)");
        assert_eq!(hidden_in("a token@ b", "https://token@m"), "a ***@ b");
        assert_eq!(hidden_in("no userinfo", "https://m/x"), "no userinfo");
    }

    /// A mirror must be a base folder URL: a scheme-less one or one with a query (where a token would
    /// sit, and where the paths appended to it landed) is refused, its password not shown.
    #[test]
    fn a_mirror_is_a_base_folder_url() {
        for ok in ["https://dl-cdn.alpinelinux.org/alpine", "HTTP://u:p@127.0.0.1:8080/alpine/"] {
            assert_eq!(checked(ok.to_owned()).ok().as_deref(), Some(ok));
        }
        // The thirtieth and thirty-first outside reviews' spellings: none is taken, none shows s3cret.
        for bad in [
            "ci:s3cret@127.0.0.1:1/alpine",
            "ftp://m/alpine",
            "http://m/alpine?token=s3cret",
            "https://m/a#s3cret",
            "http://user:S3C/s3cret@127.0.0.1:9/",
            "http:/user:s3cret@127.0.0.1/",
            "//user:s3cret@127.0.0.1/",
            "http://user:s3cret#pw@127.0.0.1/",
            "http://user:s3cret?pw@127.0.0.1/",
            "http://user:s3cret@127.0.0.1:9\\@evil/",
            "http://127.0.0.1/alpine ",
            "http://a@b:s3cret@127.0.0.1/",
        ] {
            let err = checked(bad.to_owned()).expect_err(bad).to_string();
            assert!(err.contains("invalid mirror URL") && !err.contains("s3cret"), "{err}");
        }
    }

    #[test]
    fn urls() {
        let r: Release = "3.20.3".parse().unwrap_or(Release { major: 0, minor: 0, patch: 0 });
        assert_eq!(
            tarball_url("http://m/alpine/", &r, Arch::X86_64),
            "http://m/alpine/v3.20/releases/x86_64/alpine-minirootfs-3.20.3-x86_64.tar.gz"
        );
        assert_eq!(
            yaml_url("http://m", &VersionSpec::LatestStable, Arch::Aarch64),
            "http://m/latest-stable/releases/aarch64/latest-releases.yaml"
        );
    }
}
