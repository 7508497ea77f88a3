//! `cargo xtask install-cli`: `sandbox-run` built with the C library linked in, installed by
//! `cargo install`.
//!
//! A one-shot `sandbox-run` is mostly process start-up: the dynamic build spends ~0.8 ms of its
//! ~8 ms in the dynamic loader (mapping libc and libgcc_s, binding 217 symbols) and in the helper's
//! fork of a bigger address space (`cargo xtask bench wrapper` measures both builds). glibc's
//! static-pie (`-C target-feature=+crt-static`) keeps address-space randomisation and drops that.
//!
//! The feature is set for the target only (`--target` with a `target.<triple>.rustflags` setting):
//! without `--target`, cargo would also apply it to proc macros and build scripts, which cannot be
//! static. User and group names are still looked up through NSS, whose modules a static glibc loads
//! from the system's glibc at run time: install the binary on the machine (or image) that runs it.

use std::path::{Path, PathBuf};

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
    let mut cmd = crate::cargo();
    cmd.args(["install", "--locked", "--path"])
        .arg(root.join("cli"))
        .arg("--target-dir")
        .arg(target_dir(&root))
        .args(static_args(&triple)?);
    if let Some(dir) = &args.root {
        cmd.arg("--root").arg(dir);
    }
    let status = cmd.status().context("run cargo install")?;
    ensure!(status.success(), "cargo install failed: {status}");
    Ok(())
}

/// Builds the static `sandbox-run` (release) where `install-cli` builds it, and returns its path.
pub fn build(root: &Path) -> anyhow::Result<PathBuf> {
    let triple = host_triple()?;
    let dir = target_dir(root);
    let status = crate::cargo()
        .args(["build", "--release", "-p", "sandbox-cli", "--target-dir"])
        .arg(&dir)
        .args(static_args(&triple)?)
        .current_dir(root)
        .status()
        .context("run cargo build")?;
    ensure!(status.success(), "building the static sandbox-run failed: {status}");
    Ok(dir.join(triple).join("release/sandbox-run"))
}

/// The static build's own target folder, next to the workspace's (its artifacts differ, and sharing
/// one would rebuild the dynamic ones each time).
fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from).join("static-cli")
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

/// cargo's arguments that build for `triple` with the C library linked in.
fn static_args(triple: &str) -> anyhow::Result<Vec<String>> {
    ensure!(
        triple.ends_with("-linux-gnu") || triple.ends_with("-linux-musl"),
        "a static sandbox-run is built for Linux with glibc or musl; this machine's target is {triple}"
    );
    Ok(vec![
        "--target".to_owned(),
        triple.to_owned(),
        "--config".to_owned(),
        format!("target.{triple}.rustflags=[\"-C\", \"target-feature=+crt-static\"]"),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_flags_apply_to_the_target_only() {
        let args = static_args("x86_64-unknown-linux-gnu").expect("a Linux target");
        assert_eq!(args[..2], ["--target", "x86_64-unknown-linux-gnu"]);
        assert_eq!(args[3], r#"target.x86_64-unknown-linux-gnu.rustflags=["-C", "target-feature=+crt-static"]"#);
        assert!(static_args("aarch64-apple-darwin").is_err());
    }

    #[test]
    fn the_host_triple_is_rustcs() {
        let triple = host_triple().expect("rustc -vV names the host");
        assert!(triple.contains("-linux-"), "{triple}");
    }
}
