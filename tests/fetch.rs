//! `fetch`: resolve, download, verify, cache and unpack, against the loopback mirror; never the internet.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use fetch::{Alpine, Arch, Error, NetworkPolicy, Rootfs, Signature, SignatureProblem, Trust};
use sandbox_fixtures::hostile::{self, Expect};
use sandbox_fixtures::{Fault, MiniRootfs, Mirror, TestKey, sha256_hex};
use system_tests::{ChildTest, dir_owned_by, is_child, is_root, list, skip, test_user};

/// Fixture tarballs, built once per test binary (they are deterministic).
fn tarball(version: &str) -> Vec<u8> {
    static CACHE: OnceLock<std::sync::Mutex<std::collections::HashMap<String, Vec<u8>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let mut map = cache.lock().unwrap_or_else(|p| p.into_inner());
    map.entry(version.to_owned())
        .or_insert_with(|| {
            MiniRootfs::new(version).build().expect("build the fixture rootfs (is busybox-static installed?)")
        })
        .clone()
}

/// A mirror serving fixture releases for x86_64 (versions not in the built-in checksum table).
fn mirror_with(versions: &[&str]) -> Mirror {
    let mirror = Mirror::start().expect("start the fixture mirror");
    for v in versions {
        mirror.add_release(v, "x86_64", tarball(v));
    }
    mirror
}

fn fast_policy() -> NetworkPolicy {
    NetworkPolicy {
        connect_timeout: Duration::from_secs(5),
        stall_timeout: Duration::from_secs(5),
        attempts: 2,
        backoff: Duration::from_millis(10),
        // Each test's failures are its own.
        failure_ttl: Duration::ZERO,
        ..NetworkPolicy::default()
    }
}

fn alpine(mirror: &Mirror, version: &str, cache: &Path) -> Alpine {
    alpine_at(&mirror.url(), version, cache)
}

fn alpine_at(url: &str, version: &str, cache: &Path) -> Alpine {
    Alpine::new(version)
        .arch(Arch::X86_64)
        .mirror(url)
        .signature(Signature::IfPresent)
        .cache_dir(cache)
        .offline(false)
        .require_pin(false)
        .network_policy(fast_policy())
}

/// The cache holds no tree, no tarball and no partial download.
fn assert_nothing_cached(cache: &Path) {
    for sub in ["blobs", "trees", "tmp"] {
        let entries = list(&cache.join("v1").join(sub));
        assert!(entries.is_empty(), "cache/{sub} should be empty, holds {entries:?}");
    }
}

/// Runs `count` copies of `child` at once; each must pass and print one `marker` line. Returns what
/// follows the markers.
fn at_once(child: &ChildTest, count: usize, marker: &str) -> Vec<String> {
    let running: Vec<_> = (0..count)
        .map(|_| {
            let (mut cmd, holder) = child.command();
            cmd.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
            (cmd.spawn().expect("spawn child"), holder)
        })
        .collect();
    running
        .into_iter()
        .map(|(process, _holder)| {
            let out = process.wait_with_output().expect("wait");
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success(), "child failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
            // libtest may print "test name ... " on the same line first.
            stdout
                .lines()
                .find_map(|l| l.split_once(marker).map(|(_, v)| v.to_owned()))
                .unwrap_or_else(|| panic!("child printed no {marker} line:\n{stdout}"))
        })
        .collect()
}

#[test]
fn exact_release_is_downloaded_verified_and_unpacked() {
    let mirror = mirror_with(&["3.19.1"]);
    let cache = tempfile::tempdir().expect("tempdir");
    let rootfs = alpine(&mirror, "3.19.1", cache.path()).fetch().expect("fetch 3.19.1");

    assert_eq!(rootfs.version(), Some("3.19.1"));
    assert_eq!(rootfs.arch(), Some(Arch::X86_64));
    assert_eq!(rootfs.sha256(), Some(sha256_hex(&tarball("3.19.1")).as_str()));
    let root = rootfs.path();
    assert!(root.starts_with(cache.path()));
    assert_eq!(std::fs::read_to_string(root.join("etc/alpine-release")).expect("alpine-release"), "3.19.1-fixture\n");
    // Absolute applet links are kept verbatim, never resolved on the host.
    assert_eq!(std::fs::read_link(root.join("bin/sh")).expect("bin/sh is a symlink"), Path::new("/bin/busybox"));
    let mode = |p: &str| std::fs::symlink_metadata(root.join(p)).expect(p).permissions().mode() & 0o7777;
    assert_eq!(mode("tmp"), 0o1777, "sticky /tmp");
    assert_eq!(mode("bin/bbsuid"), 0o4111, "setuid kept");
    assert_eq!(mode("root"), 0o700);
    assert_eq!(mode("bin/busybox"), 0o755);
    let motd = std::fs::metadata(root.join("etc/motd")).expect("motd");
    assert_eq!(motd.ino(), std::fs::metadata(root.join("etc/motd.link")).expect("motd.link").ino(), "hard link kept");
    if is_root() {
        assert_eq!(std::fs::metadata(root.join("etc/shadow")).expect("shadow").gid(), 42, "archive gid kept as root");
    }
    assert_eq!(mirror.hits(".tar.gz"), 1);
}

#[test]
fn warm_cache_hit_makes_no_request() {
    let mirror = mirror_with(&["3.19.1"]);
    let cache = tempfile::tempdir().expect("tempdir");
    let first = alpine(&mirror, "3.19.1", cache.path()).fetch().expect("cold fetch");
    let requests = mirror.hits("");
    let second = alpine(&mirror, "3.19.1", cache.path()).fetch().expect("warm fetch");
    assert_eq!(first, second);
    assert_eq!(mirror.hits(""), requests, "a warm exact-version hit must not touch the network");
}

#[test]
fn branch_and_latest_stable_resolve_through_latest_releases_yaml() {
    let mirror = mirror_with(&["3.19.1", "3.19.4", "3.21.0"]);
    let cache = tempfile::tempdir().expect("tempdir");
    let branch = alpine(&mirror, "3.19", cache.path()).fetch().expect("fetch 3.19");
    assert_eq!(branch.version(), Some("3.19.4"));
    let latest = alpine(&mirror, "latest-stable", cache.path()).fetch().expect("fetch latest-stable");
    assert_eq!(latest.version(), Some("3.21.0"));
    assert_eq!(
        std::fs::read_to_string(latest.path().join("etc/alpine-release")).ok().as_deref(),
        Some("3.21.0-fixture\n")
    );
    assert!(mirror.hits("v3.19/releases/x86_64/latest-releases.yaml") >= 1);
    assert!(mirror.hits("latest-stable/releases/x86_64/latest-releases.yaml") >= 1);
}

/// A mirror that answered `latest-stable` with 3.21.0 (fetched into the returned cache), and now
/// answers it with 3.19.4.
fn latest_stable_moved_back() -> (Mirror, tempfile::TempDir) {
    let mirror = mirror_with(&["3.19.4", "3.21.0"]);
    let cache = tempfile::tempdir().expect("tempdir");
    let latest = alpine(&mirror, "latest-stable", cache.path()).fetch().expect("latest-stable");
    assert_eq!(latest.version(), Some("3.21.0"));
    let older = sha256_hex(&tarball("3.19.4"));
    mirror.put(
        "latest-stable/releases/x86_64/latest-releases.yaml",
        format!(
            "- {{flavor: alpine-minirootfs, arch: x86_64, version: 3.19.4, file: alpine-minirootfs-3.19.4-x86_64.tar.gz, sha256: {older}}}\n"
        ),
    );
    (mirror, cache)
}

/// Twenty-fifth outside review: the same mirror answered `latest-stable` with 3.21.0, then with
/// 3.19.0, and it was taken. A range the mirror answers with an older release than it gave before
/// is refused, naming both; asked for by name, the older release is still fetched.
#[test]
fn a_mirror_cannot_move_a_range_back() {
    let (mirror, cache) = latest_stable_moved_back();
    let err = alpine(&mirror, "latest-stable", cache.path()).fetch().expect_err("moved back");
    assert!(
        matches!(&err, Error::Downgrade { offered, known, .. } if offered == "3.19.4" && known == "3.21.0"),
        "{err:?}"
    );
    assert!(err.to_string().contains("ask for 3.19.4 by name"), "{err}");
    let named = alpine(&mirror, "3.19.4", cache.path()).fetch().expect("by name");
    assert_eq!(named.version(), Some("3.19.4"));
}

/// The same mirror spelled otherwise (scheme in capitals, a trailing slash) is the same mirror to the
/// downgrade check: the index was keyed by the URL as spelled, and the older answer was taken.
#[test]
fn a_mirror_spelled_otherwise_cannot_move_a_range_back() {
    let (mirror, cache) = latest_stable_moved_back();
    let respelled = format!("{}/", mirror.url().replacen("http://", "HTTP://", 1));
    let err = alpine_at(&respelled, "latest-stable", cache.path()).fetch().expect_err("moved back");
    assert!(matches!(&err, Error::Downgrade { offered, .. } if offered == "3.19.4"), "{err:?}");
}

/// The twenty-sixth outside review: one answer on the mirror's word alone blocked a range for good,
/// signed requests too. What a request would not take itself does not count against it.
#[test]
fn a_weaker_answer_does_not_block_a_signed_range() {
    let key = TestKey::new(1).expect("test key");
    let mirror = mirror_with(&["3.19.1", "3.21.0"]);
    let cache = tempfile::tempdir().expect("tempdir");
    let unsigned = alpine(&mirror, "latest-stable", cache.path()).fetch().expect("on the mirror's word");
    assert_eq!(unsigned.version(), Some("3.21.0"));
    mirror.sign_release("3.19.1", "x86_64", &key).expect("sign");
    let digest = sha256_hex(&tarball("3.19.1"));
    mirror.put(
        "latest-stable/releases/x86_64/latest-releases.yaml",
        format!(
            "- {{flavor: alpine-minirootfs, arch: x86_64, version: 3.19.1, file: alpine-minirootfs-3.19.1-x86_64.tar.gz, sha256: {digest}}}\n"
        ),
    );
    let signed = alpine(&mirror, "latest-stable", cache.path())
        .test_signing_key(key.public_armored())
        .signature(Signature::Required)
        .fetch()
        .expect("the unsigned 3.21.0 does not count against a signed request");
    assert_eq!(signed.version(), Some("3.19.1"));
}

#[test]
fn pin_mismatch_names_url_and_both_digests_and_caches_nothing() {
    let mirror = mirror_with(&["3.19.1"]);
    let cache = tempfile::tempdir().expect("tempdir");
    let wrong = "0".repeat(64);
    let err = alpine(&mirror, "3.19.1", cache.path()).sha256(&wrong).fetch().expect_err("a wrong pin must fail");
    let actual = sha256_hex(&tarball("3.19.1"));
    match &err {
        Error::ChecksumMismatch { url, expected, actual: got, trust } => {
            assert!(url.ends_with("/v3.19/releases/x86_64/alpine-minirootfs-3.19.1-x86_64.tar.gz"), "{url}");
            assert_eq!(expected, &wrong);
            assert_eq!(got, &actual);
            assert_eq!(*trust, Trust::Pinned);
        }
        other => panic!("expected a checksum mismatch, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains(&wrong) && msg.contains(&actual) && msg.contains("http://127.0.0.1"), "{msg}");
    assert_nothing_cached(cache.path());
}

#[test]
fn sidecar_mismatch_is_refused() {
    let mirror = mirror_with(&["3.19.1"]);
    mirror.put(
        "v3.19/releases/x86_64/alpine-minirootfs-3.19.1-x86_64.tar.gz.sha256",
        format!("{}  alpine-minirootfs-3.19.1-x86_64.tar.gz\n", "ab".repeat(32)),
    );
    let cache = tempfile::tempdir().expect("tempdir");
    let err = alpine(&mirror, "3.19.1", cache.path()).fetch().expect_err("sidecar mismatch");
    assert!(matches!(err, Error::ChecksumMismatch { trust: Trust::MirrorSidecar, .. }), "{err:?}");
    assert_nothing_cached(cache.path());
}

#[test]
fn corrupt_body_is_refused() {
    let mirror = mirror_with(&["3.19.4"]);
    mirror.fault(".tar.gz", Fault::Corrupt);
    let cache = tempfile::tempdir().expect("tempdir");
    let err = alpine(&mirror, "3.19", cache.path()).fetch().expect_err("corrupt body");
    assert!(matches!(err, Error::ChecksumMismatch { trust: Trust::MirrorYaml, .. }), "{err:?}");
    assert_nothing_cached(cache.path());
}

#[test]
fn built_in_checksum_beats_a_lying_mirror() {
    // The mirror serves other bytes as 3.20.3, with a sidecar and yaml that agree with them.
    let mirror = Mirror::start().expect("mirror");
    mirror.add_release("3.20.3", "x86_64", tarball("3.20.3"));
    let cache = tempfile::tempdir().expect("tempdir");
    let err = alpine(&mirror, "3.20.3", cache.path()).fetch().expect_err("must not trust the mirror");
    match err {
        Error::ChecksumMismatch { expected, trust, .. } => {
            assert_eq!(expected, "d4e6fd67dcf75e40c451560ac7265166c2b72a0f38ddc9aae756a7de3d1efa0c");
            assert_eq!(trust, Trust::BuiltIn);
        }
        other => panic!("expected a checksum mismatch, got {other:?}"),
    }
    assert_nothing_cached(cache.path());
}

#[test]
fn the_default_release_is_pinned_by_the_built_in_sha512() {
    assert_eq!(fetch::DEFAULT_RELEASE, "3.24.2");
    // The mirror serves other bytes as the default release, with a sidecar that agrees with them.
    let mirror = Mirror::start().expect("mirror");
    mirror.add_release(fetch::DEFAULT_RELEASE, "x86_64", tarball(fetch::DEFAULT_RELEASE));
    let cache = tempfile::tempdir().expect("tempdir");
    let err =
        alpine(&mirror, fetch::DEFAULT_RELEASE, cache.path()).require_pin(true).fetch().expect_err("lying mirror");
    // Said as a sha512 mismatch (the twenty-fifth outside review: it was "sha256 mismatch", with
    // sha512 values).
    assert!(err.to_string().starts_with("sha512 mismatch"), "{err}");
    match err {
        Error::Sha512Mismatch { expected, .. } => {
            assert!(expected.starts_with("bb1cbdc0395826774d88"), "the official sha512: {expected}");
        }
        other => panic!("expected a sha512 mismatch, got {other:?}"),
    }
    assert_nothing_cached(cache.path());
}

#[test]
fn truncated_download_is_retried_then_refused() {
    let mirror = mirror_with(&["3.19.1"]);
    let cache = tempfile::tempdir().expect("tempdir");
    mirror.fault_times(".tar.gz", Fault::Truncate, 1);
    let ok = alpine(&mirror, "3.19.1", cache.path()).fetch();
    assert!(ok.is_ok(), "one truncated response is retried: {ok:?}");
    assert_eq!(mirror.hits(".tar.gz"), 2);

    let cache = tempfile::tempdir().expect("tempdir");
    mirror.fault(".tar.gz", Fault::Truncate);
    let err = alpine(&mirror, "3.19.1", cache.path()).fetch().expect_err("always truncated");
    assert!(matches!(err, Error::Network { attempts: 2, .. }), "{err:?}");
    assert!(err.to_string().contains("alpine-minirootfs-3.19.1-x86_64.tar.gz"), "{err}");
    assert_nothing_cached(cache.path());
}

#[test]
fn http_404_names_the_url_and_what_to_check() {
    let mirror = mirror_with(&["3.19.1"]);
    let cache = tempfile::tempdir().expect("tempdir");
    let err = alpine(&mirror, "3.19.9", cache.path()).fetch().expect_err("no such release");
    match &err {
        Error::HttpStatus { url, status: 404, .. } => assert!(url.contains("3.19.9"), "{url}"),
        other => panic!("expected 404, got {other:?}"),
    }
    assert!(err.to_string().contains("check the version"), "{err}");
    assert_nothing_cached(cache.path());
}

#[test]
fn server_errors_are_retried_with_backoff() {
    let mirror = mirror_with(&["3.19.1"]);
    let cache = tempfile::tempdir().expect("tempdir");
    mirror.fault_times(".tar.gz", Fault::ServerError, 1);
    alpine(&mirror, "3.19.1", cache.path()).fetch().expect("a 500 then the file");
    assert_eq!(mirror.hits(".tar.gz"), 2);

    let cache = tempfile::tempdir().expect("tempdir");
    mirror.fault(".tar.gz", Fault::ServerError);
    let err = alpine(&mirror, "3.19.1", cache.path()).fetch().expect_err("always 500");
    assert!(matches!(err, Error::Network { attempts: 2, .. }), "{err:?}");
    assert!(sandbox::error_chain(&err).contains("500"), "{}", sandbox::error_chain(&err));
}

/// A mirror that redirects in a loop is misconfigured, not unreachable: one attempt (reqwest follows
/// ten redirects), an error that says so and names where it was sent last, nothing cached, and the
/// mirror not recorded as unreachable (before: retried as a network failure, then "unreachable",
/// with the advice for a machine without network).
#[test]
fn a_redirect_loop_is_the_mirror_s_fault_not_the_network_s() {
    let mirror = mirror_with(&["3.19.1"]);
    let cache = tempfile::tempdir().expect("tempdir");
    mirror.fault(".tar.gz", Fault::RedirectLoop);
    let err = alpine(&mirror, "3.19.1", cache.path()).fetch().expect_err("a redirect loop");
    assert!(matches!(err, Error::Redirects { ref last, .. } if last.ends_with(".tar.gz")), "{err:?}");
    assert!(err.to_string().contains("redirects without end"), "{err}");
    assert_eq!(mirror.hits(".tar.gz"), 11, "one attempt, ten redirects followed");
    mirror.clear_faults();
    alpine(&mirror, "3.19.1", cache.path()).fetch().expect("the mirror fixed, at once: not recorded unreachable");
}

#[test]
fn server_gone_is_a_network_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
    let cache = tempfile::tempdir().expect("tempdir");
    let err = Alpine::new("3.19.1")
        .arch(Arch::X86_64)
        .mirror(format!("http://127.0.0.1:{port}/alpine"))
        .cache_dir(cache.path())
        .offline(false)
        .network_policy(fast_policy())
        .fetch()
        .expect_err("nobody listens");
    assert!(matches!(err, Error::Network { .. }), "{err:?}");
    assert!(err.to_string().contains(&format!("127.0.0.1:{port}")), "{err}");
    assert_nothing_cached(cache.path());
}

#[test]
fn stalled_download_times_out() {
    let mirror = mirror_with(&["3.19.1"]);
    mirror.fault(".tar.gz", Fault::Stall);
    let cache = tempfile::tempdir().expect("tempdir");
    let policy = NetworkPolicy { stall_timeout: Duration::from_millis(300), attempts: 1, ..fast_policy() };
    let err = alpine(&mirror, "3.19.1", cache.path()).network_policy(policy).fetch().expect_err("stalled");
    assert!(matches!(err, Error::Network { .. }), "{err:?}");
    assert_nothing_cached(cache.path());
}

#[test]
fn offline_hits_the_cache_and_misses_clearly() {
    let cache = tempfile::tempdir().expect("tempdir");
    let mirror = mirror_with(&["3.19.4"]);
    let miss = alpine(&mirror, "3.19", cache.path()).offline(true).fetch().expect_err("empty cache");
    assert!(matches!(miss, Error::NotCached { .. }), "{miss:?}");
    let text = miss.to_string();
    // The version asked for, in the commands that fetch it (a new user's review: the hint named the
    // default release, and $SANDBOX_ROOTFS, which a named version does not read).
    for hint in [
        "cargo xtask fetch-rootfs --version 3.19",
        "sandbox::fetch::Alpine::new(\"3.19\").fetch()",
        "Caching the rootfs in CI",
        "$SANDBOX_ROOTFS stands in for the default rootfs only",
    ] {
        assert!(text.contains(hint), "{hint} missing from: {text}");
    }
    assert_eq!(mirror.hits(""), 0, "offline must not touch the network");

    let online = alpine(&mirror, "3.19", cache.path()).fetch().expect("online fetch");
    let url = mirror.url();
    drop(mirror);
    let offline = |spec: &str| alpine_at(&url, spec, cache.path()).offline(true).fetch();
    for spec in ["3.19", "3.19.4", "latest-stable"] {
        let hit = offline(spec).expect("offline hit");
        assert_eq!(hit.path(), online.path(), "{spec}");
        assert_eq!(hit.version(), Some("3.19.4"));
    }
    let other = offline("3.18").expect_err("other branch");
    assert!(matches!(other, Error::NotCached { .. }), "{other:?}");
}

/// A mirror behind basic authentication: its password is in no file of the cache (index entries,
/// records, their names), and the cache still answers for that mirror offline.
#[test]
fn a_mirror_s_password_stays_out_of_the_cache() {
    let cache = tempfile::tempdir().expect("tempdir");
    let mirror = mirror_with(&["3.19.4"]);
    let url = mirror.url().replace("http://", "http://ci:s3cret@");
    let online = alpine_at(&url, "3.19", cache.path()).fetch().expect("online fetch");
    drop(mirror);
    let offline = alpine_at(&url, "3.19", cache.path()).offline(true).fetch().expect("offline hit");
    assert_eq!(offline.path(), online.path());
    assert_no_password_in(cache.path());
}

/// No file under `dir` (but the trees and blobs, which are Alpine's) has `s3cret` in its name or
/// contents.
fn assert_no_password_in(dir: &Path) {
    for entry in std::fs::read_dir(dir).expect("list") {
        let path = entry.expect("entry").path();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        assert!(!name.contains("s3cret"), "{}", path.display());
        if matches!(name.as_str(), "trees" | "blobs") {
            continue;
        }
        if path.is_dir() && !path.is_symlink() {
            assert_no_password_in(&path);
        } else if path.is_file() {
            let text = String::from_utf8_lossy(&std::fs::read(&path).expect("read")).into_owned();
            assert!(!text.contains("s3cret"), "{}: {text}", path.display());
        }
    }
}

/// A pin, once given, stays in the index: a later fetch of the same bytes through a range (whose
/// digest only the mirror vouches for) does not weaken the entry; and offline, strict pinning refuses
/// an unpinned cached release by name, not as "not in the cache", which filling the cache would not
/// change. (The outside review of the `download` feature.)
#[test]
fn a_pin_stays_in_the_index_and_offline_refusals_say_why() {
    let mirror = mirror_with(&["3.19.4"]);
    let cache = tempfile::tempdir().expect("tempdir");
    let digest = sha256_hex(&tarball("3.19.4"));
    alpine(&mirror, "3.19.4", cache.path()).sha256(&digest).fetch().expect("pinned");
    alpine(&mirror, "latest-stable", cache.path()).fetch().expect("through a range");
    let strict = alpine(&mirror, "3.19", cache.path()).offline(true).require_pin(true).fetch().expect("pinned still");
    assert_eq!(strict.verification().map(|v| v.digest), Some(Trust::Pinned));
    let unpinned = tempfile::tempdir().expect("tempdir");
    alpine(&mirror, "3.19", unpinned.path()).fetch().expect("on the mirror's word");
    let err = alpine(&mirror, "3.19", unpinned.path()).offline(true).require_pin(true).fetch().expect_err("strict");
    assert!(matches!(err, Error::NotPinned { .. }), "{err:?}");
}

#[test]
fn strict_mode_refuses_digests_only_the_mirror_vouches_for() {
    let mirror = mirror_with(&["3.19.1"]);
    let cache = tempfile::tempdir().expect("tempdir");
    let err = alpine(&mirror, "3.19.1", cache.path()).require_pin(true).fetch().expect_err("unpinned");
    assert!(matches!(err, Error::NotPinned { .. }), "{err:?}");
    assert!(err.to_string().contains("SANDBOX_REQUIRE_PIN"), "{err}");
    assert_eq!(mirror.hits(".tar.gz"), 0, "refused before downloading");
    let digest = sha256_hex(&tarball("3.19.1"));
    let pinned = alpine(&mirror, "3.19.1", cache.path()).require_pin(true).sha256(&digest).fetch();
    assert_eq!(pinned.ok().and_then(|r| r.sha256().map(str::to_owned)), Some(digest));
}

#[test]
fn progress_reports_every_byte() {
    let mirror = mirror_with(&["3.19.1"]);
    let cache = tempfile::tempdir().expect("tempdir");
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = std::sync::Arc::clone(&seen);
    alpine(&mirror, "3.19.1", cache.path())
        .progress(move |p| sink.lock().unwrap_or_else(|e| e.into_inner()).push(p))
        .fetch()
        .expect("fetch");
    let seen = seen.lock().unwrap_or_else(|e| e.into_inner());
    let size = tarball("3.19.1").len() as u64;
    assert!(seen.contains(&fetch::Progress::Downloading { done: size, total: Some(size) }), "{seen:?}");
    assert_eq!(seen.last(), Some(&fetch::Progress::Unpacking));
}

/// A fetch that finds another one of this machine fetching from the same mirror says so before it
/// waits (`Progress::Waiting`: the wait lasts as long as the other's download, and was silent), then
/// takes the other's work from the cache: one download in all.
#[test]
fn a_fetch_waiting_for_another_says_so() {
    use std::sync::{Arc, Mutex};
    let mirror = mirror_with(&["3.19.1"]);
    let cache = tempfile::tempdir().expect("tempdir");
    mirror.fault(".tar.gz", Fault::Slow(std::time::Duration::from_millis(800)));
    let (started, downloading) = std::sync::mpsc::channel::<()>();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&seen);
    let (first, second) = std::thread::scope(|s| {
        let first = s.spawn(|| {
            let started = Mutex::new(Some(started));
            alpine(&mirror, "3.19.1", cache.path())
                .progress(move |p| {
                    if matches!(p, fetch::Progress::Downloading { .. })
                        && let Some(tx) = started.lock().unwrap_or_else(|e| e.into_inner()).take()
                    {
                        let _ = tx.send(());
                    }
                })
                .fetch()
        });
        downloading.recv().expect("the first fetch is downloading");
        let second = alpine(&mirror, "3.19.1", cache.path())
            .progress(move |p| sink.lock().unwrap_or_else(|e| e.into_inner()).push(p))
            .fetch();
        (first.join().expect("thread"), second)
    });
    let (first, second) = (first.expect("first"), second.expect("second"));
    assert_eq!(first.path(), second.path());
    let seen = seen.lock().unwrap_or_else(|e| e.into_inner());
    assert_eq!(seen.first(), Some(&fetch::Progress::Waiting), "{seen:?}");
    assert!(!seen.iter().any(|p| matches!(p, fetch::Progress::Downloading { .. })), "{seen:?}");
    assert_eq!(mirror.hits(".tar.gz"), 1);
}

#[test]
fn partial_entries_of_a_killed_process_are_swept() {
    let mirror = mirror_with(&["3.19.1"]);
    let cache = tempfile::tempdir().expect("tempdir");
    let digest = sha256_hex(&tarball("3.19.1"));
    let tmp = cache.path().join("v1/tmp");
    std::fs::create_dir_all(&tmp).expect("mkdir");
    // What a process killed mid-download and mid-unpack leaves: a short file, a half tree with a
    // read-only directory in it.
    std::fs::write(tmp.join(format!("{digest}.download.99999")), b"half a tarb").expect("write");
    let half = tmp.join(format!("{digest}.tree-root.99999/usr/bin"));
    std::fs::create_dir_all(&half).expect("mkdir");
    std::fs::set_permissions(half.parent().expect("parent"), std::fs::Permissions::from_mode(0o555)).expect("chmod");
    let stale_other = tmp.join(format!("{}.download.4242", "e".repeat(64)));
    std::fs::write(&stale_other, b"x").expect("write");
    // A half-written record of a process that is gone (no pid is that large).
    let records = cache.path().join("v1/records");
    std::fs::create_dir_all(&records).expect("mkdir");
    std::fs::write(records.join(".local-0123.json.999999999-0"), b"{").expect("write");

    let rootfs = alpine(&mirror, "3.19.1", cache.path()).fetch().expect("fetch despite leftovers");
    assert!(rootfs.path().join("bin/busybox").is_file());
    assert_eq!(list(&tmp), Vec::<String>::new(), "leftovers swept");
    assert!(!list(&records).iter().any(|r| r.starts_with('.')), "half-written records swept");
}

#[test]
fn hostile_tarballs_write_nothing_outside_and_nothing_into_the_cache() {
    for case in hostile::cases(Path::new("/nonexistent-probe")).iter().map(|c| c.name) {
        // Fresh directories per case, so one case's leftovers cannot hide another's.
        let outside = tempfile::tempdir().expect("tempdir");
        std::fs::write(outside.path().join("victim"), b"original").expect("victim");
        let case = hostile::cases(outside.path()).into_iter().find(|c| c.name == case).expect("case");
        let work = tempfile::tempdir().expect("tempdir");
        let archive = work.path().join("hostile.tar.gz");
        std::fs::write(&archive, &case.tarball).expect("write archive");
        let cache = work.path().join("cache");

        let result = Rootfs::from_tarball_in(&archive, Some(&cache));

        assert_eq!(list(outside.path()), vec!["victim".to_owned()], "case {}: something appeared outside", case.name);
        assert_eq!(
            std::fs::read(outside.path().join("victim")).ok().as_deref(),
            Some(&b"original"[..]),
            "case {}",
            case.name
        );
        assert_eq!(list(&cache.join("v1/tmp")), Vec::<String>::new(), "case {}: partial entry left", case.name);
        match (&case.expect, result) {
            (Expect::Refused, Err(e)) => {
                assert!(matches!(e, Error::Unpack { .. }), "case {}: {e:?}", case.name);
                assert_nothing_cached(&cache);
            }
            (Expect::Unpacked { present, absent }, Ok(rootfs)) => {
                for (path, contents) in present {
                    let p = rootfs.path().join(path);
                    assert!(
                        std::fs::symlink_metadata(&p).is_ok_and(|m| m.is_file()),
                        "case {}: {path} missing",
                        case.name
                    );
                    assert_eq!(std::fs::read(&p).ok().as_deref(), Some(*contents), "case {}: {path}", case.name);
                }
                for path in absent {
                    assert!(
                        std::fs::symlink_metadata(rootfs.path().join(path)).is_err(),
                        "case {}: {path} created",
                        case.name
                    );
                }
            }
            (expect, result) => panic!("case {}: expected {expect:?}, got {result:?}", case.name),
        }
    }
}

#[test]
fn decompression_bomb_and_entry_flood_hit_the_caps() {
    let dest = tempfile::tempdir().expect("tempdir");
    let limits = fetch::UnpackLimits { max_bytes: 16 << 20, max_entries: 1000, ..Default::default() };
    let bomb = hostile::bomb(64 << 20);
    assert!(bomb.len() < 1 << 20, "the bomb should be small compressed: {}", bomb.len());
    let err = fetch::unpack(&bomb[..], dest.path(), &limits, fetch::Ownership::Caller).expect_err("bomb");
    assert!(matches!(err, fetch::UnpackError::TooLarge { limit } if limit == 16 << 20), "{err:?}");

    let dest = tempfile::tempdir().expect("tempdir");
    let flood = hostile::many_entries(2000);
    let err = fetch::unpack(&flood[..], dest.path(), &limits, fetch::Ownership::Caller).expect_err("flood");
    assert!(matches!(err, fetch::UnpackError::TooManyEntries { limit: 1000 }), "{err:?}");
}

#[test]
fn local_tarball_is_cached_by_digest() {
    let work = tempfile::tempdir().expect("tempdir");
    let archive = work.path().join("mine.tar.gz");
    std::fs::write(&archive, tarball("3.19.1")).expect("write");
    let cache = work.path().join("cache");
    let a = Rootfs::from_tarball_in(&archive, Some(&cache)).expect("first");
    let b = Rootfs::from_tarball_in(&archive, Some(&cache)).expect("second");
    assert_eq!(a, b);
    assert_eq!(a.version(), Some("3.19.1-fixture"), "read from /etc/alpine-release");
    assert_eq!(a.sha256(), Some(sha256_hex(&tarball("3.19.1")).as_str()));
    let missing = Rootfs::from_tarball_in(work.path().join("nope.tar.gz"), Some(&cache)).expect_err("missing");
    assert!(matches!(missing, Error::BadRootfsPath { .. }), "{missing:?}");
}

#[test]
fn sandbox_rootfs_env_bypasses_the_network() {
    let work = tempfile::tempdir().expect("tempdir");
    let archive = work.path().join("env.tar.gz");
    std::fs::write(&archive, tarball("3.19.1")).expect("write");
    ChildTest::new("child_default_rootfs")
        .env("SANDBOX_ROOTFS", &archive)
        .env("SANDBOX_CACHE_DIR", work.path().join("cache"))
        .env("SANDBOX_ALPINE_MIRROR", "http://127.0.0.1:9/unreachable")
        .env("EXPECT_VERSION", "3.19.1-fixture")
        .assert_success();
}

/// A new user's review: offline and uncached, the default rootfs's error said that $SANDBOX_ROOTFS
/// stands in "for the default rootfs only", as if it would not help, though it is the default rootfs
/// that was asked for; and it did not name the mirror, by which the cache keeps what it fetched.
#[test]
fn the_default_rootfs_offline_and_uncached_says_sandbox_rootfs_would_do() {
    let work = tempfile::tempdir().expect("tempdir");
    ChildTest::new("child_default_rootfs_offline")
        .env("SANDBOX_ROOTFS", "")
        .env("SANDBOX_OFFLINE", "1")
        .env("SANDBOX_CACHE_DIR", work.path().join("cache"))
        .env("SANDBOX_ALPINE_MIRROR", "http://127.0.0.1:9/a-mirror")
        .assert_success();
}

#[test]
#[ignore = "run by its parent test in a child process"]
fn child_default_rootfs_offline() {
    if !is_child("child_default_rootfs_offline") {
        return;
    }
    let err = fetch::default_rootfs().expect_err("offline, with an empty cache");
    let text = err.to_string();
    assert!(matches!(err, Error::NotCached { default: true, .. }), "{err:?}");
    for part in [
        "set $SANDBOX_ROOTFS to an Alpine minirootfs tarball",
        "from http://127.0.0.1:9/a-mirror",
        "cargo xtask fetch-rootfs",
    ] {
        assert!(text.contains(part), "{part} missing from: {text}");
    }
    assert!(!text.contains("stands in for the default rootfs only"), "{text}");
}

/// A new user's review: an ordinary user pointed at root's cache (0700) got a bare "Permission
/// denied" where the README promises the refusal that says whose it is and what to do.
#[test]
fn another_user_s_cache_is_refused_with_its_owner_and_the_way_out() {
    use std::os::unix::fs::PermissionsExt;
    let Some((_, uid, gid)) = test_user() else {
        return skip("no unprivileged test user: create one (`useradd sandbox-test`)");
    };
    if !is_root() {
        return; // it needs root to own the cache and to switch users
    }
    let work = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let cache = work.path().join("cache");
    std::fs::create_dir(&cache).expect("root's cache");
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    ChildTest::new("child_cache_of_another_user").as_user(uid, gid).env("SANDBOX_CACHE_DIR", &cache).assert_success();
}

#[test]
#[ignore = "run by its parent test in a child process"]
fn child_cache_of_another_user() {
    if !is_child("child_cache_of_another_user") {
        return;
    }
    let cache = std::env::var_os("SANDBOX_CACHE_DIR").expect("SANDBOX_CACHE_DIR");
    let err =
        alpine_at("http://127.0.0.1:9/none", "3.19.1", Path::new(&cache)).offline(true).fetch().expect_err("root's");
    assert!(matches!(err, Error::CacheNotPrivate { owner: 0, .. }), "{err:?}");
    assert!(err.to_string().contains("$SANDBOX_CACHE_DIR"), "{err}");
}

#[test]
#[ignore = "run by its parent test in a child process"]
fn child_default_rootfs() {
    if !is_child("child_default_rootfs") {
        return;
    }
    let rootfs = fetch::default_rootfs().expect("default rootfs from $SANDBOX_ROOTFS");
    assert_eq!(rootfs.version().map(str::to_owned), std::env::var("EXPECT_VERSION").ok());
}

#[test]
fn sixteen_processes_download_and_unpack_once() {
    let mirror = mirror_with(&["3.19.1"]);
    // A slow link, so that the sixteen really overlap.
    mirror.fault(".tar.gz", Fault::Slow(Duration::from_millis(400)));
    let cache = tempfile::tempdir().expect("tempdir");
    let child =
        ChildTest::new("child_fetch").env("SANDBOX_CACHE_DIR", cache.path()).env("SANDBOX_ALPINE_MIRROR", mirror.url());
    let mut paths = at_once(&child, 16, "ROOTFS=");
    paths.dedup();
    assert_eq!(paths.len(), 1, "all sixteen got the same tree: {paths:?}");
    assert_eq!(mirror.hits(".tar.gz"), 1, "downloaded exactly once");
    assert_eq!(list(&cache.path().join("v1/trees")).len(), 1, "unpacked exactly once");
}

#[test]
#[ignore = "run by its parent test in a child process"]
fn child_fetch() {
    if !is_child("child_fetch") {
        return;
    }
    let rootfs = Alpine::new("3.19.1").arch(Arch::X86_64).offline(false).fetch().expect("fetch in child");
    println!("ROOTFS={}", rootfs.path().display());
}

#[test]
fn rootless_unpack_as_an_unprivileged_user() {
    if !is_root() {
        // Already unprivileged: the child body's checks run here directly.
        return rootless_checks(&tempfile::tempdir().expect("tempdir").path().join("cache"));
    }
    let Some((name, uid, gid)) = test_user() else {
        return skip("no unprivileged test user: create one (`useradd sandbox-test`) or set $SANDBOX_TEST_USER");
    };
    let home = dir_owned_by(uid, gid);
    let archive = home.path().join("rootfs.tar.gz");
    std::fs::write(&archive, tarball("3.19.1")).expect("write");
    std::os::unix::fs::chown(&archive, Some(uid), Some(gid)).expect("chown");
    let out = ChildTest::new("child_rootless")
        .as_user(uid, gid)
        .env("SANDBOX_CACHE_DIR", home.path().join("cache"))
        .env("ARCHIVE", &archive)
        .assert_success();
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("uid{uid}")), "ran as {name}");
    // Root does not use a cache another user owns: it could hold anything.
    let cache = home.path().join("cache");
    let err = Rootfs::from_tarball_in(&archive, Some(&cache)).expect_err("root must refuse the user's cache");
    match &err {
        Error::CacheNotPrivate { path, owner, uid: 0, .. } => {
            assert_eq!(path, &cache);
            assert_eq!(*owner, uid);
        }
        other => panic!("expected CacheNotPrivate, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("uid {uid}")) && msg.contains("mode 0") && msg.contains("SANDBOX_CACHE_DIR"),
        "{msg}"
    );
    assert_eq!(list(&cache.join("v1/trees")).len(), 1, "root added nothing");
}

fn rootless_checks(cache: &Path) {
    let archive = std::env::var_os("ARCHIVE").map(std::path::PathBuf::from).unwrap_or_else(|| {
        let p = cache.with_file_name("rootfs.tar.gz");
        std::fs::write(&p, tarball("3.19.1")).expect("write");
        p
    });
    let me = nix::unistd::geteuid().as_raw();
    assert_ne!(me, 0, "must run unprivileged");
    let rootfs = Rootfs::from_tarball_in(&archive, Some(cache)).expect("rootless unpack");
    println!("TREE={}", rootfs.path().display());
    assert!(rootfs.path().to_string_lossy().ends_with(&format!(".uid{me}")));
    let meta = |p: &str| std::fs::symlink_metadata(rootfs.path().join(p)).expect(p);
    assert_eq!(meta("etc/shadow").uid(), me, "files belong to the user");
    assert_eq!(meta("bin/bbsuid").permissions().mode() & 0o7777, 0o4111, "setuid kept");
    assert_eq!(meta("tmp").permissions().mode() & 0o7777, 0o1777);
    assert_eq!(std::fs::read_link(rootfs.path().join("bin/sh")).ok().as_deref(), Some(Path::new("/bin/busybox")));
}

#[test]
#[ignore = "run by its parent test in a child process"]
fn child_rootless() {
    if !is_child("child_rootless") {
        return;
    }
    let cache = std::path::PathBuf::from(std::env::var_os("SANDBOX_CACHE_DIR").expect("cache dir"));
    rootless_checks(&cache);
}

// ---- issue 11: a cache nobody else can poison, bounded downloads, signed releases ----

/// The official 3.20.3 x86_64 digest (the built-in table's).
const OFFICIAL_3_20_3: &str = "d4e6fd67dcf75e40c451560ac7265166c2b72a0f38ddc9aae756a7de3d1efa0c";

#[test]
fn a_cache_writable_by_others_is_refused_with_what_to_do() {
    let work = tempfile::tempdir().expect("tempdir");
    let cache = work.path().join("cache");
    std::fs::create_dir(&cache).expect("mkdir");
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let archive = work.path().join("rootfs.tar.gz");
    std::fs::write(&archive, tarball("3.19.1")).expect("write");
    let err = Rootfs::from_tarball_in(&archive, Some(&cache)).expect_err("world-writable cache");
    assert!(matches!(&err, Error::CacheNotPrivate { mode: 0o777, .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains(&cache.display().to_string()) && msg.contains("mode 0777") && msg.contains("chmod go-w"),
        "{msg}"
    );
    assert!(list(&cache).is_empty(), "nothing was created in it");

    // A folder inside a private cache that others can write is refused as well.
    std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    Rootfs::from_tarball_in(&archive, Some(&cache)).expect("private cache");
    let blobs = cache.join("v1/blobs");
    std::fs::set_permissions(&blobs, std::fs::Permissions::from_mode(0o773)).expect("chmod");
    let err = Rootfs::from_tarball_in(&archive, Some(&cache)).expect_err("group-writable blobs/");
    assert!(matches!(&err, Error::CacheNotPrivate { path, .. } if path == &blobs), "{err:?}");
}

/// Twenty-second outside review: as root, with the cache below a folder another user owns (a
/// `$SANDBOX_CACHE_DIR`, or `sudo -E` keeping a user's `$HOME`), that user swapped the cache for one
/// of their own between the check and the sandbox's use of its tree, and their `/bin/sh` ran as root
/// inside with root's read-write volume; a link of theirs as the cache made root fill `/var/lib`.
/// Every folder and link on the way must be root's or the caller's, a folder others may write must
/// be sticky, and nothing is made before that holds.
#[test]
fn a_cache_another_user_could_swap_is_refused_before_anything_is_made() {
    use std::os::unix::fs::PermissionsExt;
    let work = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let archive = work.path().join("rootfs.tar.gz");
    std::fs::write(&archive, tarball("3.19.1")).expect("write");
    let refused = |cache: &Path, at: &Path| {
        let err = Rootfs::from_tarball_in(&archive, Some(cache)).expect_err("a cache another user could swap");
        assert!(matches!(&err, Error::CachePathNotSafe { path, .. } if path == at), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains(&at.display().to_string()) && msg.contains("$SANDBOX_CACHE_DIR"), "{msg}");
    };
    // A folder on the way that others may write, not sticky: refused, nothing made below it.
    let open = work.path().join("open");
    std::fs::create_dir(&open).expect("mkdir");
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    refused(&open.join("deep/cache"), &open);
    assert!(list(&open).is_empty(), "nothing was made in {}", open.display());
    // Sticky, as /tmp: others cannot rename what is ours in it.
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).expect("chmod");
    Rootfs::from_tarball_in(&archive, Some(&open.join("cache"))).expect("a cache in a sticky folder");
    if !is_root() {
        return; // another user's folders need root to make
    }
    let other = 4242;
    let theirs = work.path().join("theirs");
    std::fs::create_dir(&theirs).expect("mkdir");
    std::os::unix::fs::chown(&theirs, Some(other), Some(other)).expect("chown");
    refused(&theirs.join("cache"), &theirs);
    // Their link as the cache, to a folder of root's: nothing is made where it points.
    let roots = work.path().join("roots");
    std::fs::create_dir(&roots).expect("mkdir");
    let link = work.path().join("link");
    std::os::unix::fs::symlink(&roots, &link).expect("symlink");
    std::os::unix::fs::lchown(&link, Some(other), Some(other)).expect("chown the link");
    refused(&link, &link);
    // Root's link into their folder: what it points through is checked too.
    let through = work.path().join("through");
    std::os::unix::fs::symlink(theirs.join("sub"), &through).expect("symlink");
    refused(&through.join("cache"), &theirs);
    assert!(list(&theirs).is_empty() && list(&roots).is_empty(), "nothing was made");
}

/// Twenty-third outside review: the folders on the way that the cache's first use makes were made
/// by path, after the walk, with the caller's umask: under `umask 000` (or a default ACL) they came
/// out writable by everyone, and another user swapped the cache during that very first use. They
/// are made one by one under the folder checked last, with explicit modes.
#[test]
fn folders_made_on_the_way_to_the_cache_are_not_left_to_the_umask() {
    let work = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    ChildTest::new("child_cache_made_under_umask_000").env("WORK", work.path()).assert_success();
    let mode = |p: &Path| std::fs::symlink_metadata(p).expect("stat").permissions().mode() & 0o7777;
    assert_eq!(mode(&work.path().join("a")), 0o755);
    assert_eq!(mode(&work.path().join("a/b")), 0o755);
    assert_eq!(mode(&work.path().join("a/b/cache")), 0o700);
}

#[test]
#[ignore = "run by its parent test in a child process"]
fn child_cache_made_under_umask_000() {
    if !is_child("child_cache_made_under_umask_000") {
        return;
    }
    nix::sys::stat::umask(nix::sys::stat::Mode::empty());
    let work = std::path::PathBuf::from(std::env::var_os("WORK").expect("WORK"));
    let archive = work.join("rootfs.tar.gz");
    std::fs::write(&archive, tarball("3.19.1")).expect("write");
    Rootfs::from_tarball_in(&archive, Some(&work.join("a/b/cache"))).expect("a cache made under umask 000");
}

/// Twenty-fifth outside review: rootless, an unpack killed before it gave its folders their last
/// modes left folders its owner may not read (mode 000) in `tmp/`, and every later fetch failed on
/// them with "Permission denied". They are given access, then removed.
#[test]
fn leftovers_their_owner_may_not_read_are_removed() {
    let Some((_, uid, gid)) = test_user().filter(|_| is_root()) else {
        return skip("needs root and the sandbox-test user (as root, permissions do not stop the removal)");
    };
    let home = dir_owned_by(uid, gid);
    let archive = home.path().join("rootfs.tar.gz");
    std::fs::write(&archive, tarball("3.19.1")).expect("write");
    std::os::unix::fs::chown(&archive, Some(uid), Some(gid)).expect("chown");
    ChildTest::new("child_unreadable_leftovers")
        .as_user(uid, gid)
        .env("SANDBOX_CACHE_DIR", home.path().join("cache"))
        .env("ARCHIVE", &archive)
        .env("DIGEST", sha256_hex(&tarball("3.19.1")))
        .assert_success();
}

#[test]
#[ignore = "run by its parent test in a child process"]
fn child_unreadable_leftovers() {
    if !is_child("child_unreadable_leftovers") {
        return;
    }
    let cache = std::path::PathBuf::from(std::env::var_os("SANDBOX_CACHE_DIR").expect("cache"));
    let archive = std::env::var_os("ARCHIVE").expect("ARCHIVE");
    let digest = std::env::var("DIGEST").expect("DIGEST");
    let tree = Rootfs::from_tarball_in(&archive, Some(&cache)).expect("first").path().to_owned();
    std::fs::remove_dir_all(&tree).expect("remove the tree, so that it is unpacked again");
    let left = cache.join(format!("v1/tmp/{digest}.tree-left.99999999-1"));
    std::fs::create_dir_all(left.join("p/d")).expect("mkdir");
    for dir in [left.join("p/d"), left.join("p")] {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o000)).expect("chmod 000");
    }
    Rootfs::from_tarball_in(&archive, Some(&cache)).expect("the leftover does not stop the next fetch");
    assert!(!left.exists(), "the leftover is removed");
}

#[test]
fn trees_are_private_but_keep_their_modes() {
    let work = tempfile::tempdir().expect("tempdir");
    let archive = work.path().join("rootfs.tar.gz");
    std::fs::write(&archive, tarball("3.19.1")).expect("write");
    let cache = work.path().join("cache");
    std::fs::create_dir(&cache).expect("mkdir");
    // Everything up to v1/ is open to others: only v1/'s own mode keeps them out.
    for dir in [work.path(), &cache] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let rootfs = Rootfs::from_tarball_in(&archive, Some(&cache)).expect("unpack");
    let mode = |p: &Path| std::fs::symlink_metadata(p).expect("stat").permissions().mode() & 0o7777;
    assert_eq!(mode(&cache.join("v1")), 0o700, "v1/ hides every tree from other users");
    assert_eq!(mode(&rootfs.path().join("bin/bbsuid")), 0o4111, "setuid kept inside");
    assert_eq!(mode(&rootfs.path().join("tmp")), 0o1777, "sticky /tmp kept inside");
    if !is_root() {
        return;
    }
    let Some((_, uid, gid)) = test_user() else {
        return skip("no unprivileged test user: create one (`useradd sandbox-test`) or set $SANDBOX_TEST_USER");
    };
    // The other user can reach the cache folder (0755) but nothing in root's trees.
    ChildTest::new("child_cannot_reach")
        .as_user(uid, gid)
        .env(
            "TARGETS",
            format!("{}:{}", rootfs.path().join("bin/bbsuid").display(), rootfs.path().join("tmp").display()),
        )
        .env("ROOT_CACHE", &cache)
        .assert_success();
}

#[test]
#[ignore = "run by its parent test in a child process"]
fn child_cannot_reach() {
    if !is_child("child_cannot_reach") {
        return;
    }
    for target in std::env::var("TARGETS").expect("TARGETS").split(':') {
        let err = std::fs::symlink_metadata(target).expect_err("must not be reachable");
        assert_eq!(err.kind(), std::io::ErrorKind::PermissionDenied, "{target}: {err}");
        assert!(std::fs::write(Path::new(target).join("planted"), b"x").is_err(), "{target}");
    }
    // Nor does it get to use root's cache folder as its own.
    let cache = std::path::PathBuf::from(std::env::var_os("ROOT_CACHE").expect("ROOT_CACHE"));
    assert!(std::fs::metadata(&cache).is_ok(), "the cache folder itself is reachable");
    let err = Rootfs::from_tarball_in("/nonexistent.tar.gz", Some(&cache)).expect_err("root's cache");
    assert!(matches!(&err, Error::CacheNotPrivate { owner: 0, .. }), "{err:?}");
    println!("CHECKED");
}

#[test]
fn a_planted_blob_is_hashed_again_and_never_becomes_a_tree() {
    let mirror = mirror_with(&["3.19.1"]);
    let work = tempfile::tempdir().expect("tempdir");
    let cache = work.path().join("cache");
    // A cache exists; a blob named for the official 3.20.3 digest holds other (valid) bytes.
    alpine(&mirror, "3.19.1", &cache).fetch().expect("make the cache");
    let blob = cache.join(format!("v1/blobs/{OFFICIAL_3_20_3}.tar.gz"));
    std::fs::write(&blob, tarball("3.19.4")).expect("plant");
    let err = alpine(&mirror, "3.20.3", &cache).offline(true).fetch().expect_err("planted blob");
    match &err {
        Error::ChecksumMismatch { expected, actual, .. } => {
            assert_eq!(expected, OFFICIAL_3_20_3);
            assert_eq!(actual, &sha256_hex(&tarball("3.19.4")));
        }
        other => panic!("expected a checksum mismatch, got {other:?}"),
    }
    assert!(!blob.exists(), "the bad blob is removed");
    assert!(!list(&cache.join("v1/trees")).iter().any(|t| t.starts_with(OFFICIAL_3_20_3)), "no tree made");
}

#[test]
fn the_index_never_overrides_a_pin_or_the_built_in_table() {
    // 3.20.3: the table holds its sha256; 3.24.2 (the default): its sha512 (a stranger's attack
    // on the latter once made a pinned entry stand for every later unpinned request).
    for (release, branch) in [("3.20.3", "3.20"), ("3.24.2", "3.24")] {
        // A mirror that serves other bytes as the release; pinned to those bytes, the fetch is legitimate.
        let mirror = Mirror::start().expect("mirror");
        let fake = mirror.add_release(release, "x86_64", tarball(release));
        let cache = tempfile::tempdir().expect("tempdir");
        let pinned = alpine(&mirror, branch, cache.path()).sha256(&fake).fetch().expect("pinned fetch");
        assert_eq!(pinned.sha256(), Some(fake.as_str()));
        // The index now says the release is `fake` (trust: pinned). Without that pin, the table rules.
        for spec in [release, branch, "latest-stable"] {
            let err = alpine(&mirror, spec, cache.path()).offline(true).fetch().expect_err(spec);
            assert!(matches!(err, Error::NotCached { .. }), "{release} {spec}: {err:?}");
        }
        // And a different pin is not overridden either.
        let other = "1".repeat(64);
        let err = alpine(&mirror, branch, cache.path()).offline(true).sha256(&other).fetch().expect_err("other pin");
        assert!(matches!(err, Error::NotCached { .. }), "{release}: {err:?}");
    }
}

#[test]
fn the_index_is_kept_per_mirror() {
    let a = mirror_with(&["3.21.0"]);
    let b = Mirror::start().expect("mirror");
    let b_digest = b.add_release("3.21.0", "x86_64", tarball("3.19.4"));
    let cache = tempfile::tempdir().expect("tempdir");
    let from_a = alpine(&a, "latest-stable", cache.path()).fetch().expect("from a");
    assert_eq!(from_a.version(), Some("3.21.0"));
    let miss = alpine(&b, "3.21.0", cache.path()).offline(true).fetch().expect_err("b has no index entry");
    assert!(matches!(miss, Error::NotCached { .. }), "{miss:?}");
    let from_b = alpine(&b, "3.21.0", cache.path()).fetch().expect("from b");
    assert_eq!(from_b.sha256(), Some(b_digest.as_str()), "b's own release, not a's");
    assert!(b.hits(".tar.gz") >= 1, "b was asked");
}

#[test]
fn sparse_and_deep_entries_are_refused_and_deep_trees_unpack_linearly() {
    let dest = tempfile::tempdir().expect("tempdir");
    let sparse = hostile::sparse_bomb(1 << 30);
    assert!(sparse.len() < 4096, "{} bytes", sparse.len());
    let err =
        fetch::unpack(&sparse[..], dest.path(), &Default::default(), fetch::Ownership::Caller).expect_err("sparse");
    assert!(matches!(&err, fetch::UnpackError::Unsafe { reason, .. } if reason.contains("sparse")), "{err:?}");
    assert!(list(dest.path()).is_empty(), "nothing written");

    let too_deep = hostile::deep_paths(10, 65);
    let err =
        fetch::unpack(&too_deep[..], dest.path(), &Default::default(), fetch::Ownership::Caller).expect_err("deep");
    assert!(matches!(err, fetch::UnpackError::PathTooDeep { max_depth: 64, .. }), "{err:?}");

    // 2,000 entries 500 folders deep (caps raised): each folder is created once.
    let limits = fetch::UnpackLimits { max_depth: 600, max_path_bytes: 4096, ..Default::default() };
    let dest = tempfile::tempdir().expect("tempdir");
    let stats = fetch::unpack(&hostile::deep_paths(2000, 500)[..], dest.path(), &limits, fetch::Ownership::Caller)
        .expect("deep unpack");
    assert_eq!(stats.written, 2000);
    let leaf = dest.path().join(vec!["d"; 499].join("/"));
    assert_eq!(list(&leaf).len(), 2000);
}

#[test]
fn an_endless_yaml_or_tarball_hits_its_cap() {
    let mirror = mirror_with(&["3.19.1"]);
    mirror.fault("latest-releases.yaml", Fault::Endless);
    let cache = tempfile::tempdir().expect("tempdir");
    let err = alpine(&mirror, "3.19", cache.path()).fetch().expect_err("endless yaml");
    assert!(matches!(&err, Error::DownloadTooLarge { limit, .. } if *limit == 1 << 20), "{err:?}");
    assert!(err.to_string().contains("max_text_bytes"), "{err}");

    mirror.clear_faults();
    mirror.fault(".tar.gz", Fault::Endless);
    let policy = NetworkPolicy { max_tarball_bytes: 4 << 20, ..fast_policy() };
    let err = alpine(&mirror, "3.19.1", cache.path()).network_policy(policy).fetch().expect_err("endless tarball");
    assert!(matches!(&err, Error::DownloadTooLarge { limit, .. } if *limit == 4 << 20), "{err:?}");
    assert!(err.to_string().contains("max_tarball_bytes"), "{err}");
    assert_nothing_cached(cache.path());
}

#[test]
fn a_dripping_download_hits_the_overall_deadline() {
    let mirror = mirror_with(&["3.19.1"]);
    mirror.fault(".tar.gz", Fault::Drip(Duration::from_millis(20)));
    let cache = tempfile::tempdir().expect("tempdir");
    let policy = NetworkPolicy { deadline: Duration::from_millis(800), ..fast_policy() };
    let err = alpine(&mirror, "3.19.1", cache.path()).network_policy(policy).fetch().expect_err("drip");
    assert!(matches!(err, Error::DownloadDeadline { .. }), "{err:?}");
    assert!(err.to_string().contains("800ms"), "{err}");
    assert_nothing_cached(cache.path());
}

fn signed_mirror(key: &TestKey) -> Mirror {
    let mirror = mirror_with(&["3.19.1"]);
    mirror.sign_release("3.19.1", "x86_64", key).expect("sign the fixture release");
    mirror
}

#[test]
fn a_good_signature_is_checked_and_recorded() {
    let key = TestKey::new(1).expect("test key");
    let mirror = signed_mirror(&key);
    let cache = tempfile::tempdir().expect("tempdir");
    let rootfs = alpine(&mirror, "3.19.1", cache.path())
        .test_signing_key(key.public_armored())
        .signature(Signature::Required)
        .fetch()
        .expect("signed release");
    let v = rootfs.verification().expect("verification");
    assert_eq!(v.signed_by.as_deref(), Some(key.fingerprint().as_str()));
    assert_eq!(v.kinds(), ["signature", "mirror-sidecar"]);
    // Offline, Required is satisfied by what the index recorded.
    let again =
        alpine(&mirror, "3.19.1", cache.path()).offline(true).signature(Signature::Required).fetch().expect("offline");
    assert_eq!(again.verification(), rootfs.verification());
}

/// Twenty-fifth outside review: a signature binds the bytes to the key, not to the release: a
/// mirror could serve any tarball Alpine ever signed, with its genuine `.asc`, as the release asked
/// for. A signed tree that says it is another release is refused, naming both.
#[test]
fn a_signed_tarball_of_another_release_is_refused() {
    let key = TestKey::new(1).expect("test key");
    let mirror = Mirror::start().expect("mirror");
    mirror.add_release("3.21.0", "x86_64", tarball("3.19.1"));
    mirror.sign_release("3.21.0", "x86_64", &key).expect("sign");
    let cache = tempfile::tempdir().expect("tempdir");
    let err = alpine(&mirror, "3.21.0", cache.path())
        .test_signing_key(key.public_armored())
        .fetch()
        .expect_err("another release under this name");
    assert!(matches!(&err, Error::NotWhatWasAsked { found, .. } if found.starts_with("3.19.1")), "{err:?}");
    assert!(err.to_string().contains("not 3.21.0 (x86_64)"), "{err}");
}

#[test]
fn bad_missing_and_wrongly_keyed_signatures_are_refused() {
    let key = TestKey::new(1).expect("test key");
    let wrong = TestKey::new(2).expect("another key");
    let cases: Vec<(&str, Mirror, Vec<String>, Signature)> = vec![
        ("signed by an untrusted key", signed_mirror(&wrong), vec![key.public_armored()], Signature::IfPresent),
        ("signed by a test key, only Alpine's trusted", signed_mirror(&key), vec![], Signature::IfPresent),
        ("required but unsigned", mirror_with(&["3.19.1"]), vec![key.public_armored()], Signature::Required),
        ("bad signature", signed_mirror(&key), vec![key.public_armored()], Signature::IfPresent),
        ("not a signature", signed_mirror(&key), vec![key.public_armored()], Signature::IfPresent),
    ];
    for (name, mirror, keys, policy) in cases {
        let asc = "v3.19/releases/x86_64/alpine-minirootfs-3.19.1-x86_64.tar.gz.asc";
        if name == "bad signature" {
            mirror.put(asc, key.sign(b"other bytes").expect("sign"));
        }
        if name == "not a signature" {
            mirror.put(asc, "-----BEGIN PGP SIGNATURE-----\n\ngarbage\n-----END PGP SIGNATURE-----\n");
        }
        let cache = tempfile::tempdir().expect("tempdir");
        let mut request = alpine(&mirror, "3.19.1", cache.path()).signature(policy);
        for k in keys {
            request = request.test_signing_key(k);
        }
        let err = request.fetch().expect_err(name);
        let expected = match name {
            "required but unsigned" => matches!(&err, Error::Signature { problem: SignatureProblem::Missing, .. }),
            "not a signature" => matches!(&err, Error::Signature { problem: SignatureProblem::Malformed { .. }, .. }),
            _ => matches!(&err, Error::Signature { problem: SignatureProblem::Bad { .. }, .. }),
        };
        assert!(expected, "{name}: {err:?}");
        assert!(
            sandbox::error_chain(&err).contains("alpine-minirootfs-3.19.1-x86_64.tar.gz"),
            "{name}: {}",
            sandbox::error_chain(&err)
        );
        assert_nothing_cached(cache.path());
    }
}

#[test]
fn require_signature_from_the_environment() {
    let mirror = mirror_with(&["3.19.1"]);
    let cache = tempfile::tempdir().expect("tempdir");
    ChildTest::new("child_require_signature")
        .env("SANDBOX_REQUIRE_SIGNATURE", "1")
        .env("SANDBOX_ALPINE_MIRROR", mirror.url())
        .env("SANDBOX_CACHE_DIR", cache.path())
        .assert_success();
}

#[test]
#[ignore = "run by its parent test in a child process"]
fn child_require_signature() {
    if !is_child("child_require_signature") {
        return;
    }
    let err = Alpine::new("3.19.1").arch(Arch::X86_64).offline(false).fetch().expect_err("unsigned");
    assert!(matches!(err, Error::Signature { problem: SignatureProblem::Missing, .. }), "{err:?}");
}

#[test]
fn a_local_tarball_is_hashed_once_per_machine() {
    let work = tempfile::tempdir().expect("tempdir");
    let archive = work.path().join("rootfs.tar.gz");
    std::fs::write(&archive, tarball("3.19.1")).expect("write");
    let cache = work.path().join("cache");
    let first = Rootfs::from_tarball_in(&archive, Some(&cache)).expect("first");
    let records: Vec<String> =
        list(&cache.join("v1/records")).into_iter().filter(|r| r.starts_with("local-")).collect();
    assert_eq!(records.len(), 1, "{records:?}");
    let record = std::fs::read_to_string(cache.join("v1/records").join(&records[0])).expect("record");
    for field in ["\"ino\"", "\"size\"", "\"mtime_ns\"", "\"ctime_ns\"", first.sha256().unwrap_or("none")] {
        assert!(record.contains(field), "{field} missing from {record}");
    }
    assert_eq!(Rootfs::from_tarball_in(&archive, Some(&cache)).expect("second"), first);

    // Other bytes of the same size and mtime: the ctime moved, so the file is hashed again.
    let mtime = std::fs::metadata(&archive).and_then(|m| m.modified()).expect("mtime");
    let mut other = tarball("3.19.4");
    other.resize(tarball("3.19.1").len(), 0);
    std::fs::write(&archive, &other).expect("rewrite");
    std::fs::File::options().write(true).open(&archive).and_then(|f| f.set_modified(mtime)).expect("set mtime");
    let changed = Rootfs::from_tarball_in(&archive, Some(&cache));
    assert_ne!(changed.ok().and_then(|r| r.sha256().map(str::to_owned)), first.sha256().map(str::to_owned));
}

#[test]
fn an_unreachable_mirror_fails_once_per_machine() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
    let cache = tempfile::tempdir().expect("tempdir");
    let child = ChildTest::new("child_unreachable")
        .env("SANDBOX_CACHE_DIR", cache.path())
        // A mirror behind basic authentication: its password never shows (CI logs are often public).
        .env("SANDBOX_ALPINE_MIRROR", format!("http://ci:s3cret@127.0.0.1:{port}/alpine"));
    let mut kinds = at_once(&child, 4, "KIND=");
    kinds.sort();
    assert_eq!(kinds, ["network", "recorded", "recorded", "recorded"], "one process tried, the others did not");
    // Nor does the record of that failure keep it.
    assert_no_password_in(cache.path());
}

#[test]
#[ignore = "run by its parent test in a child process"]
fn child_unreachable() {
    if !is_child("child_unreachable") {
        return;
    }
    let err = Alpine::new("3.19.1").arch(Arch::X86_64).offline(false).fetch().expect_err("unreachable");
    let text = err.to_string();
    for hint in ["$SANDBOX_ROOTFS", "pre-fetch step", "Caching the rootfs in CI"] {
        assert!(text.contains(hint), "{hint} missing from: {text}");
    }
    let chain = format!("{err:?}");
    assert!(text.contains("http://ci:***@127.0.0.1:") && !chain.contains("s3cret"), "{chain}");
    match err {
        Error::Network { .. } => println!("KIND=network"),
        Error::MirrorUnreachable { ref cause, .. } => {
            assert!(!cause.is_empty(), "{err:?}");
            println!("KIND=recorded");
        }
        other => panic!("unexpected error: {other:?}"),
    }
}

#[test]
fn many_threads_of_one_process_share_the_cache() {
    let work = tempfile::tempdir().expect("tempdir");
    let archive = work.path().join("rootfs.tar.gz");
    std::fs::write(&archive, tarball("3.19.1")).expect("write");
    let cache = work.path().join("cache");
    let trees: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| s.spawn(|| Rootfs::from_tarball_in(&archive, Some(&cache)).map(|r| r.path().to_owned())))
            .collect();
        handles.into_iter().map(|h| h.join().expect("thread").expect("unpack")).collect()
    });
    assert!(trees.windows(2).all(|w| w[0] == w[1]), "{trees:?}");
    assert_eq!(list(&cache.join("v1/trees")).len(), 1);
    assert!(list(&cache.join("v1/tmp")).is_empty());
}

#[test]
fn cache_files_are_never_opened_through_symlinks() {
    let work = tempfile::tempdir().expect("tempdir");
    let cache = work.path().join("cache");
    let first = work.path().join("first.tar.gz");
    std::fs::write(&first, tarball("3.19.1")).expect("write");
    Rootfs::from_tarball_in(&first, Some(&cache)).expect("make the cache");
    // A lock file planted as a symlink: following it would create the file it points at.
    let second = work.path().join("second.tar.gz");
    std::fs::write(&second, tarball("3.19.4")).expect("write");
    let digest = sha256_hex(&tarball("3.19.4"));
    let target = work.path().join("created-through-a-symlink");
    std::os::unix::fs::symlink(&target, cache.join(format!("v1/locks/{digest}.lock"))).expect("plant");
    let err = Rootfs::from_tarball_in(&second, Some(&cache)).expect_err("symlinked lock");
    assert!(matches!(&err, Error::Io { op: "open lock file", .. }), "{err:?}");
    assert!(!target.exists(), "nothing was created through the symlink");
}

/// Review 18: a local file that is not a gzip tarball (`SANDBOX_ROOTFS=/etc/passwd`,
/// `sandbox-run --rootfs notes.txt`) is refused with "failed to unpack
/// `<cache>/v1/blobs/<sha256>.tar.gz`: not gzip data …": the message names a cache file the user
/// never gave (and that is gone by then), not the file they gave. It should name that file.
#[test]
fn a_local_file_that_is_no_tarball_is_named_in_the_error() {
    let work = tempfile::tempdir().expect("tempdir");
    let notes = work.path().join("notes.txt");
    std::fs::write(&notes, "root:x:0:0:root:/root:/bin/sh\n").expect("write");
    let err = Rootfs::from_tarball_in(&notes, Some(&work.path().join("cache"))).expect_err("not a tarball");
    let message = sandbox::error_chain(&err);
    assert!(message.contains(&notes.display().to_string()), "{message}");
}
