//! `sandbox-run --per-test`: one fresh sandbox per test of a libtest binary, for users without nextest.
//! The binary lists its tests (`--list`) in a sandbox too (it is not trusted, and its
//! `main` runs to list), then each test runs alone (`--exact NAME`) in a sandbox of its own; results
//! print as libtest prints them.

use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use crate::Error;
use crate::options::SandboxOptions;
use crate::setup::{Prepared, prepare};

/// libtest's exit code when a test failed.
pub const TESTS_FAILED: i32 = 101;

/// Flags that change how tests run, not which: kept out of the listing.
const RUN_ONLY_FLAGS: [&str; 6] = ["--nocapture", "--show-output", "--quiet", "-q", "--report-time", "--shuffle"];
/// The same, taking a value.
const RUN_ONLY_OPTIONS: [&str; 5] = ["--test-threads", "--color", "--format", "-Z", "--shuffle-seed"];

/// The libtest arguments that select tests (filters, `--skip`, `--exact`, `--ignored`, …).
fn selection(args: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if RUN_ONLY_FLAGS.contains(&a.as_str()) {
            continue;
        }
        if RUN_ONLY_OPTIONS.contains(&a.as_str()) {
            it.next();
            continue;
        }
        if RUN_ONLY_OPTIONS.iter().any(|o| a.starts_with(&format!("{o}="))) {
            continue;
        }
        out.push(a.clone());
    }
    out
}

/// The names of the tests the prepared binary lists with `args` (as `name: test` lines), listed in
/// its sandbox. Output that is no harness's list ([`is_test_list`]; nothing at all only where
/// `may_be_empty`) is no test binary's: refused, rather than run as one with no tests.
fn list(prepared: &Prepared, args: &[String], may_be_empty: bool) -> Result<Vec<String>, Error> {
    let fail = |reason: String| Error::List { binary: PathBuf::from(&prepared.program), reason };
    let out = crate::capped::output(prepared.command().arg("--list").args(args))
        .map_err(|e| fail(sandbox::error_chain(&e)))?;
    if !out.status.success() {
        return Err(fail(format!("{}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim())));
    }
    let text = String::from_utf8(out.stdout).map_err(|_| fail("the list is not UTF-8".into()))?;
    if !(is_test_list(&text) || may_be_empty && text.trim().is_empty()) {
        return Err(fail("it printed no libtest list (is it a test binary, built by cargo test?)".into()));
    }
    let names: Vec<String> = text.lines().filter_map(|l| l.strip_suffix(": test")).map(str::to_owned).collect();
    // No libtest name holds one: a control character would forge the lines printed with it (the
    // tenth outside review: an escape sequence hid a FAILED and printed a passing summary).
    if let Some(odd) = names.iter().find(|n| n.chars().any(char::is_control)) {
        return Err(fail(format!("a test name holds a control character: {odd:?}")));
    }
    Ok(names)
}

/// Whether `text` is what a test harness prints for `--list`: libtest's `name: test` lines ended by
/// `N tests, M benchmarks`, or, from a harness that prints no such line (libtest-mimic, a
/// `harness = false` test's usual harness; the thirty-fourth outside review), at least one line and
/// only `name: test` and `name: bench` lines.
fn is_test_list(text: &str) -> bool {
    let mut lines = text.lines().filter(|l| !l.is_empty());
    let summary = lines.clone().next_back().unwrap_or_default();
    if summary.ends_with(" benchmarks") || summary.ends_with(" benchmark") {
        return true;
    }
    lines.clone().next().is_some() && lines.all(|l| l.ends_with(": test") || l.ends_with(": bench"))
}

/// A test's name and how it ended.
type Ran = (String, Outcome);

/// How one test ended, and what it printed.
#[derive(Debug)]
struct Outcome {
    passed: bool,
    output: String,
}

impl Outcome {
    /// A failure of sandbox-run's own, before or after the test (its sandbox, its kept layer).
    fn failed(e: &dyn std::error::Error) -> Outcome {
        Outcome { passed: false, output: format!("sandbox-run: {}", sandbox::error_chain(e)) }
    }
}

/// Runs each selected test of the libtest binary `binary` in its own sandbox, `jobs` at a time; prints
/// libtest's lines and summary; returns 0 when every test passed, [`TESTS_FAILED`] otherwise.
///
/// # Errors
/// When the binary cannot list its tests or the sandbox cannot be prepared.
pub fn per_test(opts: &SandboxOptions, jobs: usize, binary: &str, args: &[String]) -> Result<i32, Error> {
    let started = Instant::now();
    let select = selection(args);
    // libtest's: --nocapture shows each test's output as it ends, --show-output the passing tests'
    // at the end (a failing test's is shown either way).
    let nocapture = args.iter().any(|a| a == "--nocapture");
    let show_output = args.iter().any(|a| a == "--show-output");
    let only_ignored = select.iter().any(|a| a == "--ignored");
    let include_ignored = select.iter().any(|a| a == "--include-ignored");
    // One sandbox configuration for the listings and all tests, unless each test keeps its own
    // writable layer.
    let prepared = prepare(opts, binary)?;
    // All tests first: a binary that lists none in a way no harness does is refused here. A
    // selection may be empty, which libtest-mimic prints as nothing at all.
    let everything = list(&prepared, &[], false)?.len();
    let listed = list(&prepared, &select, true)?;
    let mut ignored_flags: Vec<String> =
        select.iter().filter(|a| a.starts_with("--ignored") || a.starts_with("--include-ignored")).cloned().collect();
    let ignored = if only_ignored || include_ignored {
        Vec::new()
    } else {
        let mut flags = select.clone();
        flags.push("--ignored".into());
        list(&prepared, &flags, true)?
    };
    // A set: the binary chooses how many names it lists, and a list of them compared with a list took
    // minutes of sandbox-run's time for 80000 (the seventeenth outside review).
    let ignored: std::collections::HashSet<String> = ignored.into_iter().collect();
    let (to_run, skipped): (Vec<String>, Vec<String>) = listed.into_iter().partition(|t| !ignored.contains(t));
    let filtered_out = everything.saturating_sub(to_run.len() + skipped.len());
    ignored_flags.dedup();

    let shared = opts.keep_failed.is_none().then_some(&prepared);
    let stdout = Mutex::new(std::io::stdout());
    let say = |line: &str| {
        let mut out = stdout.lock().unwrap_or_else(|p| p.into_inner());
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    };
    let count = to_run.len() + skipped.len();
    say(&format!("\nrunning {count} test{}", if count == 1 { "" } else { "s" }));
    for t in &skipped {
        say(&format!("test {t} ... ignored"));
    }
    let each = Each { ignored_flags: &ignored_flags, passing_shown: nocapture || show_output };
    let next = AtomicUsize::new(0);
    let kept = AtomicUsize::new(0);
    let results: Mutex<Vec<Ran>> = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..jobs.clamp(1, to_run.len().max(1)) {
            scope.spawn(|| {
                while let Some(name) = to_run.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let mut outcome = match shared {
                        Some(prepared) => run_one(prepared, name, &each),
                        None => run_keeping(opts, binary, name, &each, prepared.program_file.as_ref()),
                    };
                    if nocapture && !outcome.output.is_empty() {
                        say(outcome.output.trim_end_matches('\n'));
                    }
                    let verdict = if outcome.passed { "ok" } else { "FAILED" };
                    say(&format!("test {name} ... {verdict}"));
                    // Kept for the summary only if it shows there, and within KEPT_MAX for all.
                    let shown_later = !outcome.passed || (show_output && !nocapture);
                    let output = std::mem::take(&mut outcome.output);
                    outcome.output = if shown_later { keep_for_summary(output, &kept) } else { String::new() };
                    results.lock().unwrap_or_else(|p| p.into_inner()).push((name.clone(), outcome));
                }
            });
        }
    });
    let mut results = results.into_inner().unwrap_or_else(|p| p.into_inner());
    results.sort_by(|a, b| a.0.cmp(&b.0));
    let (passed, failed): (Vec<&Ran>, Vec<&Ran>) = results.iter().partition(|(_, o)| o.passed);
    // libtest's sections: each test's output under its name, then the names again.
    let section = |title: &str, tests: &[&Ran]| {
        say(&format!("\n{title}:\n"));
        for (name, outcome) in tests {
            say(&format!("---- {name} stdout ----\n{}", outcome.output));
        }
        say(&format!("\n{title}:"));
        for (name, _) in tests {
            say(&format!("    {name}"));
        }
    };
    if show_output && !nocapture && !passed.is_empty() {
        section("successes", &passed);
    }
    if !failed.is_empty() {
        section("failures", &failed);
    }
    let passed = passed.len();
    say(&format!(
        "\ntest result: {}. {passed} passed; {} failed; {} ignored; 0 measured; {filtered_out} filtered out; finished in {:.2}s\n",
        if failed.is_empty() { "ok" } else { "FAILED" },
        failed.len(),
        skipped.len(),
        started.elapsed().as_secs_f64()
    ));
    Ok(if failed.is_empty() { 0 } else { TESTS_FAILED })
}

/// The most bytes of the tests' output kept for the summary, all tests together: each test's is
/// capped (crate::capped), but a binary listing hundreds of tests that print up to that cap made
/// sandbox-run hold all of it until the end, 33 MB a test (the sixteenth outside review: 2.8 GB for
/// 80 tests, past any `--memory` of the sandbox's).
const KEPT_MAX: usize = 64 << 20;

/// `output`, as much of it as fits within [`KEPT_MAX`] with what `kept` counts kept already, with a
/// line saying so where it is cut.
fn keep_for_summary(mut output: String, kept: &AtomicUsize) -> String {
    let before = kept.fetch_add(output.len(), Ordering::Relaxed);
    if before.saturating_add(output.len()) <= KEPT_MAX {
        return output;
    }
    output.truncate(char_floor(&output, KEPT_MAX.saturating_sub(before)));
    output.push_str("\n(sandbox-run keeps at most 64 MiB of all tests' output for this summary; the rest of this test's is left out)\n");
    output
}

/// Runs one test alone in a fresh sandbox whose writable layer is kept under `--keep-failed` if it fails.
/// `held`: the binary as the listing's sandbox was prepared from it (`Prepared::program_file`).
fn run_keeping(opts: &SandboxOptions, binary: &str, name: &str, each: &Each<'_>, held: Option<&OwnedFd>) -> Outcome {
    let prepared = match crate::setup::prepare_held(opts, binary, Some(name), held) {
        Ok(p) => p,
        Err(e) => return Outcome::failed(&e),
    };
    let Some(dir) = &prepared.kept else {
        return Outcome::failed(&Error::Option { option: "--keep-failed", value: String::new(), expected: "a folder" });
    };
    let outcome = run_one(&prepared, name, each);
    let text = if outcome.passed { "passed" } else { "failed" }.to_owned();
    let command = vec![prepared.program.clone(), "--exact".into(), name.to_owned()];
    match crate::run::keep_if_failed(dir, outcome.passed, &prepared, command, text) {
        Ok(()) => outcome,
        Err(e) => Outcome::failed(&e),
    }
}

/// How each test is run, and what of its output is wanted.
struct Each<'a> {
    /// `--ignored` or `--include-ignored`, as given: an ignored test runs only with one.
    ignored_flags: &'a [String],
    /// Whether a passing test's output is shown (`--nocapture`, `--show-output`); a failing test's
    /// always is. Unwanted output is not made text (it was, then dropped: up to 32 MiB a test).
    passing_shown: bool,
}

/// Runs one test alone in a fresh sandbox.
fn run_one(prepared: &crate::setup::Prepared, name: &str, each: &Each<'_>) -> Outcome {
    let out = crate::capped::output(
        prepared
            .command()
            .args(["--exact", name, "--nocapture", "--test-threads", "1"])
            .args(each.ignored_flags.iter().cloned()),
    );
    // Each stream's bytes are dropped once they are text.
    let text = |std::process::Output { stdout, stderr, .. }| {
        let out = text_within(&stdout);
        drop(stdout);
        (out, text_within(&stderr))
    };
    match out {
        // Exit 0 is a pass only if the harness says it ran that test: one that ignores `--exact` (a
        // custom harness, an old libtest-mimic given a `[kind] name`) runs none and exits 0, which
        // read as a pass (two outside reviews).
        Ok(o) if o.status.success() && !String::from_utf8_lossy(&o.stdout).contains(&format!("test {name} ... ")) => {
            let (mut output, stderr) = text(o);
            output.push_str(&stderr);
            output.push_str(&format!(
                "(sandbox-run: it exited 0 but printed no `test {name} ... ` line: no test of that name ran; does \
                 its harness take `--exact NAME`?)"
            ));
            Outcome { passed: false, output }
        }
        Ok(o) if o.status.success() && !each.passing_shown => Outcome { passed: true, output: String::new() },
        Ok(o) if o.status.success() => {
            let (stdout, stderr) = text(o);
            Outcome { passed: true, output: own_output(&stdout, name) + &stderr }
        }
        Ok(o) => {
            let status = o.status;
            let (mut output, stderr) = text(o);
            output.push_str(&stderr);
            output.push_str(&format!("({status})"));
            Outcome { passed: false, output }
        }
        Err(e) => Outcome::failed(&e),
    }
}

/// `bytes` (a stream crate::capped kept, at most [`crate::capped::KEPT`] bytes) as text, each invalid
/// sequence replaced as `String::from_utf8_lossy` does, and no longer than that either: replaced byte
/// by byte, 16 MiB of invalid bytes became 48 MiB of text, and with the copies joining both streams a
/// test took 220 MB of sandbox-run's memory, for each of `-j` at once (the seventeenth outside review).
fn text_within(bytes: &[u8]) -> String {
    let max = crate::capped::KEPT;
    let mut text = String::with_capacity(bytes.len().min(max));
    for chunk in bytes.utf8_chunks() {
        let replaced = if chunk.invalid().is_empty() { "" } else { "\u{FFFD}" };
        for piece in [chunk.valid(), replaced] {
            let room = max.saturating_sub(text.len());
            if piece.len() > room {
                text.push_str(&piece[..char_floor(piece, room)]);
                return text;
            }
            text.push_str(piece);
        }
    }
    text
}

/// The largest length of `text` at most `at` that ends on a character boundary (all of it if shorter).
fn char_floor(text: &str, at: usize) -> usize {
    let mut at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// What a passing test printed, without the lines its harness printed around it (run alone with
/// `--nocapture`: `running 1 test`, `test NAME ... ` before the output, `ok` after it, and the
/// result line), which `--per-test` prints itself.
fn own_output(stdout: &str, name: &str) -> String {
    let text = stdout.trim_start_matches('\n');
    let text = text.strip_prefix("running 1 test\n").unwrap_or(text);
    let text = text.rfind("\ntest result: ").map_or(text, |at| &text[..at]);
    let text = text.strip_prefix(&format!("test {name} ... ")).unwrap_or(text);
    let text = text.trim_end_matches('\n');
    let text = text.strip_suffix("ok").unwrap_or(text).trim_end_matches('\n');
    if text.is_empty() { String::new() } else { format!("{text}\n") }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A test's output is text as `from_utf8_lossy` makes it, and no longer than the stream kept,
    /// however much of it is invalid (the seventeenth outside review: 16 MiB of 0xff made 48 MiB).
    #[test]
    fn a_test_s_output_is_replaced_as_lossy_does_and_stays_within_the_cap() {
        for bytes in [&b"plain"[..], b"caf\xc3\xa9", b"a\xffb\xfe\xfd", b"\xe2\x82", b"\xf0\x9f\x98\x80!"] {
            assert_eq!(text_within(bytes), String::from_utf8_lossy(bytes));
        }
        let invalid = vec![0xffu8; crate::capped::KEPT];
        let text = text_within(&invalid);
        assert!(text.len() <= crate::capped::KEPT && text.starts_with('\u{FFFD}'), "{} bytes", text.len());
    }

    #[test]
    fn a_passing_tests_own_output_is_kept_and_its_harness_lines_are_not() {
        let raw = "\nrunning 1 test\ntest m::t ... line one\nline two\nok\n\ntest result: ok. 1 passed; 0 failed\n\n";
        assert_eq!(own_output(raw, "m::t"), "line one\nline two\n");
        let silent = "\nrunning 1 test\ntest m::t ... ok\n\ntest result: ok. 1 passed; 0 failed\n\n";
        assert_eq!(own_output(silent, "m::t"), "");
    }

    #[test]
    fn selection_keeps_filters_and_drops_run_flags() {
        let args: Vec<String> = [
            "net::",
            "--skip",
            "slow",
            "--nocapture",
            "--test-threads",
            "4",
            "--color=never",
            "--exact",
            "--include-ignored",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(selection(&args), ["net::", "--skip", "slow", "--exact", "--include-ignored"]);
    }

    #[test]
    fn libtest_and_libtest_mimic_lists_are_lists_and_other_output_is_not() {
        assert!(is_test_list("a::b: test\nc: bench\n\n2 tests, 1 benchmark\n"), "libtest");
        assert!(is_test_list("0 tests, 0 benchmarks\n"), "libtest, nothing selected");
        assert!(is_test_list("check_a: test\n[slow] check_b: test\nspeed: bench\n"), "libtest-mimic");
        assert!(!is_test_list(""), "nothing printed");
        assert!(!is_test_list("Usage: tool [OPTIONS]\n"), "another program's help");
        assert!(!is_test_list("a: test\nhello\n"), "a list with something else in it");
    }
}
