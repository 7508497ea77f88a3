//! `Sandbox::run` and `Sandbox::run_with`: a Rust closure inside a fresh sandbox, run once.
//!
//! A closure cannot be sent to another process, but a closure that captures nothing is no data at
//! all: only its code, which the sandbox's process has too, since it runs the same binary (forked
//! from the fork server, an exec of this very file). So the caller sends the offset of a function
//! that makes that closure and calls it (`entry::<F, I, T>`), the build id of the binary, and the
//! input as JSON; the sandbox's process, forked by init like a program's, finds the function at the
//! same offset in its own copy of the binary (ASLR moves the whole binary, not its parts), checks the
//! build id, runs it and sends the value back as JSON. Nothing of the caller's code runs twice, no
//! test harness runs in the sandbox, and the fork server starts it as fast as a command.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::config::Job;
use crate::report::Record;
use crate::spawn::handle::{HelperHandle, Stage, exit_status, with_fallback};
use crate::spawn::pump::{Pump, Sink};
use crate::{Error, Stdio};

impl crate::Sandbox {
    /// Runs `f` inside a fresh sandbox and returns its result, which travels back as JSON. `f` must
    /// capture nothing (a compile error says so otherwise): give it its input with
    /// [`run_with`](Self::run_with). Works anywhere (tests, `main`, other threads); every call gets a
    /// sandbox of its own. `f`'s output goes to this process's stdout and stderr, through `print!`
    /// (a test harness captures it).
    ///
    /// # Examples
    /// ```no_run
    /// let sb = sandbox::Sandbox::builder().hostname("inner").build()?;
    /// let name: String = sb.run(|| std::fs::read_to_string("/etc/hostname").unwrap())?;
    /// assert_eq!(name, "inner\n");
    /// # Ok::<(), sandbox::Error>(())
    /// ```
    ///
    /// A closure that captures is a compile error ("Sandbox::run takes a closure that captures
    /// nothing: pass what it needs with Sandbox::run_with(input, |input| ...)"):
    /// ```compile_fail
    /// let sb = sandbox::Sandbox::builder().build()?;
    /// let path = String::from("/etc/hostname");
    /// let text: String = sb.run(move || std::fs::read_to_string(&path).unwrap())?;
    /// # Ok::<(), sandbox::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Panicked`] (message and location) if `f` panics; [`Error::Setup`],
    /// [`Error::TimedOut`], [`Error::MemoryLimitExceeded`] as for commands; [`Error::Crashed`] if its
    /// process dies of a signal.
    pub fn run<T, F>(&self, f: F) -> Result<T, Error>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> T,
    {
        const {
            assert!(
                std::mem::size_of::<F>() == 0,
                "Sandbox::run takes a closure that captures nothing: pass what it needs with Sandbox::run_with(input, |input| ...)"
            )
        };
        // Captures only `f`, which is nothing: still nothing.
        self.run_with((), move |()| f())
    }

    /// Runs `f(input)` inside a fresh sandbox and returns its result; `input` travels as JSON. `f`
    /// must capture nothing, as for [`run`](Self::run).
    ///
    /// # Examples
    /// ```no_run
    /// let sb = sandbox::Sandbox::builder().build()?;
    /// let n: usize = sb.run_with("/etc".to_owned(), |dir| std::fs::read_dir(dir).unwrap().count())?;
    /// # Ok::<(), sandbox::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`run`](Self::run), and [`Error::ClosureResult`] when the input or the value does not
    /// (de)serialize.
    pub fn run_with<I, T, F>(&self, input: I, f: F) -> Result<T, Error>
    where
        I: Serialize + DeserializeOwned,
        T: Serialize + DeserializeOwned,
        F: FnOnce(I) -> T,
    {
        const {
            assert!(
                std::mem::size_of::<F>() == 0,
                "Sandbox::run_with takes a closure that captures nothing: pass what it needs as its input"
            )
        };
        // `f` moves to the sandbox's process (see `entry`): it is not dropped here.
        std::mem::forget(f);
        let input = serde_json::to_string(&input)
            .map_err(|e| Error::ClosureResult { reason: format!("cannot serialize the closure's input: {e}") })?;
        run(self, crate::sys::code::offset_of(entry::<F, I, T>), input)
    }
}

/// Whether this process is a sandbox's process running a closure. Always `false` since closures
/// stopped re-entering `main` (they never reach the caller's code); kept for compatibility.
pub fn in_sandbox_child() -> bool {
    false
}

/// What the sandbox's process calls: makes the closure `F` (which is no data: the caller forgot its
/// own, so this one is that value, moved), decodes the input, calls it, encodes the value.
fn entry<F, I, T>(input: &[u8]) -> Result<Vec<u8>, String>
where
    F: FnOnce(I) -> T,
    I: DeserializeOwned,
    T: Serialize,
{
    let f: F = crate::sys::code::conjure();
    let input: I = serde_json::from_slice(input).map_err(|e| format!("cannot deserialize the closure's input: {e}"))?;
    serde_json::to_vec(&f(input)).map_err(|e| format!("cannot serialize the closure's result: {e}"))
}

/// Starts the closure at `entry` in a fresh sandbox and waits for its value.
fn run<T: DeserializeOwned>(sandbox: &crate::Sandbox, entry: usize, input: String) -> Result<T, Error> {
    let (null, piped) = (Stdio::null(), Stdio::piped());
    let build = crate::sys::code::build_id().to_owned();
    let thread = std::thread::current().name().map(str::to_owned);
    // A closure debugs like the test around it: the caller's backtrace settings go in.
    let env: Vec<(String, Option<String>)> = crate::spawn::closure::BACKTRACE_VARIABLES
        .into_iter()
        .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_owned(), Some(v))))
        .collect();
    let ending = with_fallback(|| {
        let job = Job::Closure { entry, build: build.clone(), input: input.clone(), thread: thread.clone() };
        // A backtrace's frames are named from the binary, which the closure's process links in before
        // the closure runs, only when a backtrace is asked for (spawn::closure::reach_own_binary).
        let start = sandbox.config(job, Some((&env, None)))?;
        let mut handle = HelperHandle::start(start, [&null, &piped, &piped], Stage::Started)?;
        // Forward the output through print!, so that a test harness captures it like the test's own.
        let pump =
            Pump::default().with(handle.stdout.take(), Sink::stdout()).with(handle.stderr.take(), Sink::stderr());
        handle.pump_output(pump);
        let ending = handle.wait_end();
        handle.take_pump().finish();
        ending
    })?;
    match ending.value {
        Some(Record::Value { json }) => serde_json::from_str(&json)
            .map_err(|e| Error::ClosureResult { reason: format!("cannot deserialize its value: {e}") }),
        Some(Record::Panicked { message, location }) => Err(Error::Panicked { message, location }),
        Some(Record::Unencodable { reason }) => Err(Error::ClosureResult { reason }),
        _ => match ending.status.map(exit_status).or(ending.helper) {
            Some(status) => Err(Error::Crashed { status }),
            None => Err(Error::HelperDied { status: None }),
        },
    }
}
