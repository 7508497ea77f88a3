//! `cargo xtask fetch-rootfs`: what CI runs before the tests, and what prints the cache key.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Mutex;

use fetch::{Alpine, Arch, Progress, Signature};

#[derive(clap::Args)]
pub struct Args {
    /// `X.Y.Z`, `X.Y` (newest patch) or `latest-stable` [default: $SANDBOX_ALPINE_VERSION, else the pinned release]
    #[arg(long)]
    version: Option<String>,
    /// Alpine architecture name (x86_64, aarch64, …) [default: the host's]
    #[arg(long)]
    arch: Option<Arch>,
    /// Mirror base URL [default: $SANDBOX_ALPINE_MIRROR, else the Alpine CDN]
    #[arg(long)]
    mirror: Option<String>,
    /// Expected sha256 of the tarball
    #[arg(long)]
    sha256: Option<String>,
    /// Cache directory [default: $SANDBOX_CACHE_DIR, else $XDG_CACHE_HOME/sandbox, else ~/.cache/sandbox]
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    /// Use the cache only [default: $SANDBOX_OFFLINE=1]
    #[arg(long)]
    offline: bool,
    /// Refuse a release without a good OpenPGP signature by Alpine's key [default: $SANDBOX_REQUIRE_SIGNATURE=1]
    #[arg(long)]
    require_signature: bool,
    /// Print one JSON object instead of lines
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let mut request = match &args.version {
        Some(v) => Alpine::new(v),
        None => Alpine::default(),
    };
    if let Some(a) = args.arch {
        request = request.arch(a);
    }
    if let Some(m) = &args.mirror {
        request = request.mirror(m);
    }
    if let Some(d) = &args.sha256 {
        request = request.sha256(d);
    }
    if let Some(c) = &args.cache_dir {
        request = request.cache_dir(c);
    }
    if args.offline {
        request = request.offline(true);
    }
    if args.require_signature {
        request = request.signature(Signature::Required);
    }
    let reporter = Reporter::new(!args.json);
    let request = request.progress(move |p| reporter.report(p));
    let rootfs = request.fetch().map_err(|e| {
        // The fetch's own advice names $SANDBOX_ROOTFS; where it is set already, say what it does.
        match std::env::var_os("SANDBOX_ROOTFS") {
            Some(set) => with_hint(e).context(format!(
                "$SANDBOX_ROOTFS is set ({}): the sandboxes use that rootfs, and need no pre-fetch; \
                 this command fetches the pinned Alpine release regardless",
                set.to_string_lossy()
            )),
            None => with_hint(e),
        }
    })?;

    let path = rootfs.path().display().to_string();
    let version = rootfs.version().unwrap_or("unknown");
    let arch = rootfs.arch().map_or_else(|| "unknown".to_owned(), |a| a.to_string());
    let sha256 = rootfs.sha256().unwrap_or("");
    let verified = rootfs.verification().map(fetch::Verification::kinds).unwrap_or_default();
    let signed_by = rootfs.verification().and_then(|v| v.signed_by.clone());
    if args.json {
        let obj = serde_json::json!({
            "path": path, "version": version, "arch": arch, "sha256": sha256,
            "verified": verified, "signed_by": signed_by,
        });
        println!("{obj}");
    } else {
        println!("path:     {path}");
        println!("version:  {version}");
        println!("arch:     {arch}");
        println!("sha256:   {sha256}");
        println!("verified: {}", verified.join(", "));
    }
    Ok(())
}

/// A fetch error as one paragraph: the library's errors already say what to do.
pub fn with_hint(e: fetch::Error) -> anyhow::Error {
    anyhow::Error::new(e).context("could not fetch the Alpine rootfs")
}

/// A progress bar on a terminal; a few plain lines elsewhere (CI logs); nothing in JSON mode.
struct Reporter {
    bar: Option<indicatif::ProgressBar>,
    plain: bool,
    last_decile: Mutex<Option<u64>>,
}

impl Reporter {
    fn new(enabled: bool) -> Reporter {
        let tty = std::io::stderr().is_terminal();
        let bar = (enabled && tty).then(|| {
            let bar = indicatif::ProgressBar::new(0);
            bar.set_style(
                indicatif::ProgressStyle::with_template("{msg:12} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            bar.set_message("downloading");
            bar
        });
        Reporter { bar, plain: enabled && !tty, last_decile: Mutex::new(None) }
    }

    fn report(&self, p: Progress) {
        match (p, &self.bar) {
            (Progress::Downloading { done, total }, Some(bar)) => {
                if let Some(t) = total {
                    bar.set_length(t);
                }
                bar.set_position(done);
            }
            (Progress::Downloading { done, total: Some(total) }, None) if self.plain && total > 0 => {
                let decile = done * 10 / total;
                let mut last = self.last_decile.lock().unwrap_or_else(|e| e.into_inner());
                if *last != Some(decile) {
                    *last = Some(decile);
                    eprintln!("downloading: {}% of {total} bytes", decile * 10);
                }
            }
            (Progress::Unpacking, Some(bar)) => {
                bar.finish_with_message("unpacking");
            }
            (Progress::Unpacking, None) if self.plain => eprintln!("unpacking"),
            (Progress::Waiting, Some(bar)) => bar.set_message("waiting"),
            (Progress::Waiting, None) if self.plain => {
                eprintln!("waiting for another process fetching from this mirror")
            }
            _ => {}
        }
    }
}
