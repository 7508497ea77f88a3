//! `cargo xtask shards [--partitions N]`: the CI recipe of docs/ci.md, simulated on one machine. The
//! workspace's `#[sandbox_test]` suite is archived once (`cargo nextest archive`), then run as N
//! partitions (`--partition hash:K/N`), each from a fresh folder with its own sandbox cache, as N CI
//! machines would. It fails unless the union of what the partitions ran is the whole suite and every
//! test ran, and passed, exactly once.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail, ensure};

pub fn run(partitions: u32) -> anyhow::Result<()> {
    ensure!(partitions >= 1, "--partitions must be at least 1");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let root = crate::workspace_root()?;
    let target = crate::target_dir();
    let dir = target.join("shards");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let archive = dir.join("suite.tar.zst");
    let status = Command::new(&cargo)
        .args(["nextest", "archive", "-p", "system-tests", "--test", "suite", "--archive-file"])
        .arg(&archive)
        .current_dir(&root)
        .status()
        .context("run cargo nextest archive (is cargo-nextest installed?)")?;
    ensure!(status.success(), "cargo nextest archive failed: {status}");

    let whole = list(&cargo, &root, &archive)?;
    let mut seen: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    let mut failed = Vec::new();
    for k in 1..=partitions {
        let machine = dir.join(format!("machine-{k}"));
        std::fs::create_dir_all(machine.join("extract")).with_context(|| format!("create {}", machine.display()))?;
        let status = Command::new(&cargo)
            .args(["nextest", "run", "--profile", "ci", "--no-fail-fast", "--archive-file"])
            .arg(&archive)
            .arg("--workspace-remap")
            .arg(&root)
            .arg("--extract-to")
            .arg(machine.join("extract"))
            .arg("--partition")
            .arg(format!("hash:{k}/{partitions}"))
            .env("SANDBOX_CACHE_DIR", machine.join("cache"))
            .current_dir(&root)
            .status()
            .context("run cargo nextest run")?;
        // nextest writes JUnit into its store, the workspace's own `target/nextest` (also when
        // CARGO_TARGET_DIR is elsewhere): keep this machine's copy.
        let junit = machine.join("junit.xml");
        let written = root.join("target/nextest/ci/junit.xml");
        std::fs::rename(&written, &junit)
            .with_context(|| format!("collect the partition's junit.xml from {}", written.display()))?;
        let cases = junit_cases(&std::fs::read_to_string(&junit)?);
        println!("shards: partition {k}/{partitions}: {} tests, {status}", cases.len());
        for (name, passed) in cases {
            if !passed {
                failed.push(name.clone());
            }
            seen.entry(name).or_default().push(k);
        }
    }
    let twice: Vec<_> = seen.iter().filter(|(_, ks)| ks.len() > 1).map(|(n, ks)| format!("{n} {ks:?}")).collect();
    let missing: Vec<_> = whole.iter().filter(|t| !seen.contains_key(*t)).collect();
    let extra: Vec<_> = seen.keys().filter(|t| !whole.contains(t)).collect();
    if !twice.is_empty() || !missing.is_empty() || !extra.is_empty() || !failed.is_empty() {
        bail!(
            "partitions do not add up to the suite: ran twice {twice:?}, never ran {missing:?}, unknown {extra:?}, failed {failed:?}"
        );
    }
    println!(
        "shards: {partitions} partitions ran {} tests, each exactly once and passed; their union is the whole suite",
        seen.len()
    );
    Ok(())
}

/// The suite's tests as nextest names them (`binary-id test-name`), as a run with the same filters sees them.
fn list(cargo: &str, root: &Path, archive: &Path) -> anyhow::Result<Vec<String>> {
    let out = Command::new(cargo)
        .args(["nextest", "list", "--message-format", "oneline", "--archive-file"])
        .arg(archive)
        .arg("--workspace-remap")
        .arg(root)
        .current_dir(root)
        .output()
        .context("run cargo nextest list")?;
    ensure!(out.status.success(), "cargo nextest list failed: {}", String::from_utf8_lossy(&out.stderr));
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect())
}

/// `(classname testname, passed)` for each `<testcase>` of a JUnit report.
fn junit_cases(xml: &str) -> Vec<(String, bool)> {
    let attr = |tag: &str, key: &str| {
        let start = tag.find(&format!(" {key}=\""))? + key.len() + 3;
        tag[start..].find('"').map(|end| tag[start..start + end].to_owned())
    };
    let mut cases = Vec::new();
    let mut rest = xml;
    while let Some(at) = rest.find("<testcase ") {
        rest = &rest[at..];
        let Some(tag_end) = rest.find('>') else { break };
        let tag = &rest[..=tag_end];
        let body = if tag.ends_with("/>") { "" } else { rest.find("</testcase>").map_or("", |e| &rest[tag_end..e]) };
        if let (Some(class), Some(name)) = (attr(tag, "classname"), attr(tag, "name")) {
            let passed = !body.contains("<failure") && !body.contains("<error") && !body.contains("<skipped");
            cases.push((format!("{class} {name}"), passed));
        }
        rest = &rest[tag_end..];
    }
    cases
}

#[cfg(test)]
mod tests {
    use super::junit_cases;

    #[test]
    fn reads_passes_and_failures() {
        let xml = r#"<testsuite><testcase name="a" classname="s::t" time="0.1"/>
            <testcase name="b" classname="s::t"><failure message="x"/></testcase>
            <testcase name="c" classname="s::t"><system-out>ok</system-out></testcase></testsuite>"#;
        assert_eq!(
            junit_cases(xml),
            vec![("s::t a".to_owned(), true), ("s::t b".to_owned(), false), ("s::t c".to_owned(), true)]
        );
    }
}
