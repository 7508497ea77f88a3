//! A program's output collected up to a size: what sandbox-run keeps of a test's or a listing's
//! output is bounded, whatever the program prints (the tenth outside review: a test printing without
//! end grew sandbox-run's memory by 350 MB/s, an ELF interpreter listing without end to 3.45 GB).

use std::io::Read;
use std::process::Output;

/// At most this much of each of stdout and stderr is kept.
pub(crate) const KEPT: usize = 16 << 20;

/// Runs `cmd` to completion as [`sandbox::Command::output`] does, keeping at most [`KEPT`] bytes of
/// each stream: once one holds more, the sandbox is ended (its program killed) and the rest read and
/// dropped, and the kept bytes end with a line saying so.
///
/// # Errors
/// As [`sandbox::Command::spawn`] and [`sandbox::Child::wait`].
pub(crate) fn output(cmd: &mut sandbox::Command<'_>) -> Result<Output, sandbox::Error> {
    let mut child =
        cmd.stdin(sandbox::Stdio::null()).stdout(sandbox::Stdio::piped()).stderr(sandbox::Stdio::piped()).spawn()?;
    let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
    let (tell, told) = std::sync::mpsc::channel::<bool>();
    let (stdout, stderr) = std::thread::scope(|scope| {
        let read = |from: Option<Box<dyn Read + Send>>| {
            let tell = tell.clone();
            scope.spawn(move || {
                let kept = from.map(|s| keep(s, &tell)).unwrap_or_default();
                let _ = tell.send(false);
                kept
            })
        };
        let out = read(stdout.map(|s| Box::new(s) as Box<dyn Read + Send>));
        let err = read(stderr.map(|s| Box::new(s) as Box<dyn Read + Send>));
        // `true`: a stream went past its size, the sandbox is ended; `false`: a stream ended.
        let mut ended = 0;
        while ended < 2 {
            match told.recv() {
                Ok(true) => {
                    let _ = child.kill();
                }
                Ok(false) => ended += 1,
                Err(_) => break,
            }
        }
        (out.join().unwrap_or_default(), err.join().unwrap_or_default())
    });
    let status = child.wait()?;
    Ok(Output { status, stdout, stderr })
}

/// Reads `from` to its end, keeping the first [`KEPT`] bytes; says `true` on `tell` once there were
/// more.
fn keep(mut from: impl Read, tell: &std::sync::mpsc::Sender<bool>) -> Vec<u8> {
    let mut kept = Vec::new();
    let mut buf = vec![0u8; 64 << 10];
    let mut cut = false;
    loop {
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) if !cut && kept.len() + n <= KEPT => kept.extend_from_slice(&buf[..n]),
            Ok(_) if cut => {}
            Ok(_) => {
                cut = true;
                kept.extend_from_slice(format!("\n[sandbox-run: output cut at {} MiB]\n", KEPT >> 20).as_bytes());
                let _ = tell.send(true);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    kept
}
