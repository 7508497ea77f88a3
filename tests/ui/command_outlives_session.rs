// A session's command borrows the session: one kept past the session's end (it would have no
// sandbox to join, and failed only when run) is a compile error (a new user's review).
fn main() -> Result<(), sandbox::Error> {
    let sb = sandbox::Sandbox::builder().build()?;
    let session = sb.session()?;
    let mut command = session.command("/bin/true");
    drop(session);
    command.status()?;
    Ok(())
}
