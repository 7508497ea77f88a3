//! One sandbox for several commands: files and processes persist between them; exits non-zero if
//! they do not.
//!
//! `SANDBOX_ROOTFS=/tmp/rootfs.tar.gz cargo run -p sandbox --example session`

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let sb = sandbox::Sandbox::builder().hostname("session-demo").build()?;
    let session = sb.session()?;
    // The loop returns once the background job has become `sleep` (its comm changes at exec).
    let start = "echo 'state kept' > /tmp/state; sleep 30 & while [ \"$(cat /proc/$!/comm)\" != sleep ]; do :; done";
    session.command("/bin/sh").args(["-c", start]).status()?;
    let out = session.command("/bin/sh").args(["-c", "cat /tmp/state; ps -o pid,args"]).output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    print!("{text}");
    if !text.starts_with("state kept\n") || !text.lines().any(|l| l.ends_with("sleep 30")) {
        return Err("the file or the background sleep did not outlive its command".into());
    }
    Ok(()) // dropping the session kills the background sleep, and everything else in it
}
