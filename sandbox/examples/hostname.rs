//! Runs `hostname`, `ps` and `cat /etc/alpine-release` in a fresh sandbox.
//!
//! `cargo run -p sandbox --example hostname` (uses `$SANDBOX_ROOTFS` or the pinned Alpine release).

fn main() -> Result<(), sandbox::Error> {
    let sb = sandbox::Sandbox::builder().hostname("box").build()?;
    let out = sb
        .command("/bin/sh")
        .args(["-c", "hostname; ps; cat /etc/alpine-release"])
        .stderr(sandbox::Stdio::inherit())
        .output()?;
    print!("{}", String::from_utf8_lossy(&out.stdout));
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    println!("exit: {}", out.status);
    Ok(())
}
