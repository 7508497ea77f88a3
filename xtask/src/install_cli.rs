//! `cargo xtask install-cli`: `sandbox-run` built with the C library linked in, installed by
//! `cargo install`.
//!
//! A one-shot `sandbox-run` is mostly process start-up: the dynamic build spends 0.5 to 1 ms of a
//! start in the dynamic loader (mapping libc and libgcc_s, binding 217 symbols) and in the helper's
//! fork of a bigger address space (`cargo xtask bench wrapper` measures both builds). glibc's
//! static-pie (`-C target-feature=+crt-static`) keeps address-space randomisation and drops that.
//!
//! The feature is set for the target only (`--target`, see [`link_statically`]): without
//! `--target`, cargo would also apply it to proc macros and build scripts, which cannot be static.
//! Such a build resolves user and host names through `getent` (fetch's `getent` module,
//! sandbox's `spawn::subids`): the NSS modules a static glibc would load cannot run in it.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail, ensure};

#[derive(clap::Args)]
pub struct Args {
    /// Where to install (cargo install's `--root`: the binary goes to `ROOT/bin`; default `~/.cargo`).
    #[arg(long)]
    root: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let root = crate::workspace_root()?;
    let triple = host_triple()?;
    // Built and checked first; cargo install then finds it built (same folder, profile and flags).
    built(&root, &triple)?;
    let mut cmd = crate::cargo();
    cmd.args(["install", "--locked", "--path"]).arg(root.join("cli")).arg("--target-dir").arg(target_dir());
    link_statically(&mut cmd, &triple)?;
    if let Some(dir) = &args.root {
        cmd.arg("--root").arg(dir);
    }
    let status = cmd.status().context("run cargo install")?;
    ensure!(status.success(), "cargo install failed: {status}");
    Ok(())
}

/// Builds the static `sandbox-run` (release) where `install-cli` builds it, and returns its path.
pub fn build(root: &Path) -> anyhow::Result<PathBuf> {
    built(root, &host_triple()?)
}

/// [`build`] for `triple`.
fn built(root: &Path, triple: &str) -> anyhow::Result<PathBuf> {
    let dir = target_dir();
    let mut cmd = crate::cargo();
    cmd.args(["build", "--release", "-p", "sandbox-cli", "--target-dir"]).arg(&dir).current_dir(root);
    link_statically(&mut cmd, triple)?;
    let status = cmd.status().context("run cargo build")?;
    ensure!(status.success(), "building the static sandbox-run failed: {status}");
    let bin = dir.join(triple).join("release/sandbox-run");
    ensure_static(&bin)?;
    Ok(bin)
}

/// Fails unless `bin` has no ELF interpreter: a flag source that cargo ranks above ours, or a
/// toolchain that ignores `crt-static`, would otherwise give a dynamic binary without a word.
fn ensure_static(bin: &Path) -> anyhow::Result<()> {
    match sandbox_cli::interpreter(bin).with_context(|| format!("read {}", bin.display()))? {
        None => Ok(()),
        Some(interp) => bail!(
            "{} came out dynamically linked (interpreter {}): cargo ignored the crt-static flag; \
             check RUSTFLAGS, CARGO_ENCODED_RUSTFLAGS and the rustflags of your cargo configuration",
            bin.display(),
            interp.display()
        ),
    }
}

/// The static build's own target folder, inside the workspace's (its artifacts differ, and sharing
/// one would rebuild the dynamic ones each time).
fn target_dir() -> PathBuf {
    crate::target_dir().join("static-cli")
}

/// This machine's target triple, as rustc reports it (`rustc -vV`, line `host:`).
fn host_triple() -> anyhow::Result<String> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let out = std::process::Command::new(&rustc).arg("-vV").output().context("run rustc -vV")?;
    ensure!(out.status.success(), "rustc -vV failed: {}", out.status);
    let text = String::from_utf8(out.stdout).context("rustc -vV printed something other than UTF-8")?;
    match text.lines().find_map(|l| l.strip_prefix("host: ")) {
        Some(triple) => Ok(triple.trim().to_owned()),
        None => bail!("rustc -vV printed no `host:` line:\n{text}"),
    }
}

/// The architectures whose executables are 64-bit little-endian ELF, the kind
/// `sandbox_cli::interpreter` reads to check that the result is static.
const ELF64_LE: [&str; 5] = ["x86_64", "aarch64", "riscv64gc", "powerpc64le", "loongarch64"];

/// Makes `cmd` (cargo install or build) build for `triple` with the C library linked in.
///
/// cargo takes rustflags from the first of `CARGO_ENCODED_RUSTFLAGS`, `RUSTFLAGS`, the
/// configuration's `target.<triple>.rustflags`, then its `build.rustflags`: the flag joins the first
/// two, else becomes the third (a `build.rustflags` is then not read). With `--target`, none of them
/// reaches proc macros and build scripts, which cannot be static.
fn link_statically(cmd: &mut Command, triple: &str) -> anyhow::Result<()> {
    let arch = triple.split('-').next().unwrap_or_default();
    ensure!(
        ELF64_LE.contains(&arch) && (triple.contains("-linux-gnu") || triple.contains("-linux-musl")),
        "a static sandbox-run is built for 64-bit little-endian Linux ({}) with glibc or musl, whose \
         executables it checks before installing; this machine's target is {triple}: `cargo install \
         --path cli` installs a dynamic one",
        ELF64_LE.join(", ")
    );
    cmd.args(["--target", triple]);
    let (name, value) =
        rustflags(triple, std::env::var("CARGO_ENCODED_RUSTFLAGS").ok(), std::env::var("RUSTFLAGS").ok());
    match name {
        Some(name) => cmd.env(name, value),
        None => cmd.arg("--config").arg(value),
    };
    Ok(())
}

/// The flag, where [`link_statically`] puts it: an environment variable (name, value) or, without
/// either, a `--config` setting (`None`, setting).
fn rustflags(triple: &str, encoded: Option<String>, plain: Option<String>) -> (Option<&'static str>, String) {
    const FLAG: &str = "-Ctarget-feature=+crt-static";
    match (encoded, plain) {
        (Some(e), _) if e.is_empty() => (Some("CARGO_ENCODED_RUSTFLAGS"), FLAG.to_owned()),
        (Some(e), _) => (Some("CARGO_ENCODED_RUSTFLAGS"), format!("{e}\x1f{FLAG}")),
        (None, Some(p)) => (Some("RUSTFLAGS"), format!("{p} {FLAG}")),
        (None, None) => (None, format!("target.{triple}.rustflags=[\"{FLAG}\"]")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_joins_the_rustflags_cargo_reads() {
        let t = "x86_64-unknown-linux-gnu";
        let flag = "-Ctarget-feature=+crt-static";
        assert_eq!(rustflags(t, None, None), (None, format!("target.{t}.rustflags=[\"{flag}\"]")));
        assert_eq!(rustflags(t, None, Some("-Dwarnings".into())), (Some("RUSTFLAGS"), format!("-Dwarnings {flag}")));
        let encoded = Some("-Dwarnings\x1f-Copt-level=2".to_owned());
        assert_eq!(
            rustflags(t, encoded, Some("ignored by cargo".into())),
            (Some("CARGO_ENCODED_RUSTFLAGS"), format!("-Dwarnings\x1f-Copt-level=2\x1f{flag}"))
        );
        assert_eq!(rustflags(t, Some(String::new()), None), (Some("CARGO_ENCODED_RUSTFLAGS"), flag.to_owned()));
        assert!(link_statically(&mut Command::new("cargo"), "aarch64-apple-darwin").is_err());
        // The third outside review: the check reads 64-bit little-endian ELF only, so these were
        // refused after the whole build.
        for other in ["i686-unknown-linux-gnu", "armv7-unknown-linux-gnueabihf", "s390x-unknown-linux-gnu"] {
            assert!(link_statically(&mut Command::new("cargo"), other).is_err(), "{other}");
        }
        assert!(link_statically(&mut Command::new("cargo"), "aarch64-unknown-linux-musl").is_ok());
    }

    #[test]
    fn a_dynamic_binary_is_refused() {
        let me = std::env::current_exe().expect("this test binary");
        let err = ensure_static(&me).expect_err("a test binary is dynamically linked");
        assert!(err.to_string().contains("dynamically linked"), "{err}");
    }

    #[test]
    fn the_host_triple_is_rustcs() {
        let triple = host_triple().expect("rustc -vV names the host");
        assert!(triple.contains("-linux-"), "{triple}");
    }
}
