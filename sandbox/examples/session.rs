//! One sandbox for several commands: files and processes persist between them.
//!
//! `SANDBOX_ROOTFS=/tmp/rootfs.tar.gz cargo run -p sandbox --example session`

fn main() -> Result<(), sandbox::Error> {
    let sb = sandbox::Sandbox::builder().hostname("session-demo").build()?;
    let session = sb.session()?;
    session.command("/bin/sh").args(["-c", "echo 'state kept' > /tmp/state; sleep 30 &"]).status()?;
    let out = session.command("/bin/sh").args(["-c", "cat /tmp/state; ps -o pid,args"]).output()?;
    print!("{}", String::from_utf8_lossy(&out.stdout));
    Ok(()) // dropping the session kills the background sleep, and everything else in it
}
