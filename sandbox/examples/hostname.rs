//! Runs `hostname`, `ps` and `cat /etc/alpine-release` in a fresh sandbox; exits non-zero unless the
//! sandbox has its own hostname and sees only its own processes.
//!
//! `cargo run -p sandbox --example hostname` (uses `$SANDBOX_ROOTFS` or the pinned Alpine release).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let sb = sandbox::Sandbox::builder().hostname("box").build()?;
    let out = sb.command("/bin/sh").args(["-c", "hostname; ps -o pid,args; cat /etc/alpine-release"]).output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    print!("{text}");
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<&str> = text.lines().collect();
    // hostname, the ps header, init (1), sh (2), ps: nothing of the host's.
    let own = lines.first() == Some(&"box") && lines.get(2).is_some_and(|l| l.trim_start().starts_with("1 "));
    if !out.status.success() || !own || lines.len() != 6 {
        return Err(format!("unexpected: {} with output {text:?}", out.status).into());
    }
    Ok(())
}
