//! What a host-built program needs to start on another rootfs: its ELF interpreter (`PT_INTERP`) and the
//! shared libraries that interpreter loads for it.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use crate::Error;
use crate::error::io;
use crate::host_path::{fd_path, held_path};

// elf(5): program header types and dynamic section tags.
const PT_INTERP: u32 = 3;
const PT_DYNAMIC: u32 = 2;
const DT_NULL: u64 = 0;
const DT_AUDIT: u64 = 0x6fff_fefc;
const DT_DEPAUDIT: u64 = 0x6fff_fefb;

/// The most of a dynamic section read (a program's holds a few dozen 16-byte entries).
const DYNAMIC_MAX: usize = 1 << 20;

/// The program's ELF interpreter (e.g. `/lib64/ld-linux-x86-64.so.2`), or `None` for a static program
/// and for a script (`#!`: the program its first line names is the rootfs's, e.g. Alpine's `/bin/sh`).
///
/// # Errors
/// When the file cannot be read, or is neither a script nor a 64-bit little-endian ELF file.
pub fn interpreter(program: &Path) -> Result<Option<PathBuf>, Error> {
    Ok(dynamic(program, program)?.and_then(|d| d.interpreter))
}

/// What a program's ELF headers say about how it is loaded.
#[derive(Debug, Default, PartialEq, Eq)]
struct Dynamic {
    /// `PT_INTERP`: the loader, for a dynamic program.
    interpreter: Option<PathBuf>,
    /// Whether its dynamic section names an audit module (`DT_AUDIT`, `DT_DEPAUDIT`), which glibc's
    /// loader runs (`la_version`) before anything else, also under `--list`.
    audit: bool,
}

/// [`Dynamic`] of the file at `open` (a held file's [`fd_path`]), named `program` in messages;
/// `None` for a script.
fn dynamic(open: &Path, program: &Path) -> Result<Option<Dynamic>, Error> {
    use std::os::unix::fs::FileExt;
    let file = open_regular(open).map_err(io("read", program))?;
    let not_elf = || Error::Option {
        option: "program",
        value: program.display().to_string(),
        expected: "an ELF64 executable or a #! script",
    };
    // Only the parts named below are read, never the whole file (an outside review: a sparse file of
    // 3 GB with an ELF header was read into memory whole).
    let read = |offset: u64, len: usize| -> Option<Vec<u8>> {
        let mut bytes = vec![0u8; len];
        file.read_exact_at(&mut bytes, offset).ok().map(|()| bytes)
    };
    let mut head = [0u8; 64];
    let got = file.read_at(&mut head, 0).map_err(io("read", program))?;
    if head[..got].starts_with(b"#!") {
        return Ok(None);
    }
    if got < head.len() || !head.starts_with(b"\x7fELF\x02\x01") {
        return Err(not_elf());
    }
    let u16_at = |b: &[u8], o: usize| b.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]) as usize);
    let u32_at = |b: &[u8], o: usize| b.get(o..o + 4).and_then(|b| b.try_into().ok()).map(u32::from_le_bytes);
    let u64_at = |b: &[u8], o: usize| b.get(o..o + 8).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes);
    // elf(5): e_phoff at 0x20, e_phentsize at 0x36, e_phnum at 0x38; p_type at +0, p_offset at +8, p_filesz at +0x20.
    let (phoff, phentsize, phnum) = match (u64_at(&head, 0x20), u16_at(&head, 0x36), u16_at(&head, 0x38)) {
        // An ELF64 program header is 56 bytes: a larger size would only make the table big to read.
        (Some(o), Some(s), Some(n)) if (0x38..=0x100).contains(&s) => (o, s, n),
        (_, _, Some(0)) => return Ok(Some(Dynamic::default())),
        _ => return Err(not_elf()),
    };
    let table = read(phoff, phentsize * phnum).ok_or_else(not_elf)?;
    let mut found = Dynamic::default();
    for ph in table.chunks_exact(phentsize) {
        let (Some(kind), Some(off), Some(len)) = (u32_at(ph, 0), u64_at(ph, 8), u64_at(ph, 0x20)) else {
            return Err(not_elf());
        };
        if kind == PT_INTERP && found.interpreter.is_none() {
            // A path, at most PATH_MAX long.
            let len = usize::try_from(len).unwrap_or(usize::MAX).min(4096);
            let raw = read(off, len).ok_or_else(not_elf)?;
            let text = raw.split(|b| *b == 0).next().unwrap_or_default();
            found.interpreter = Some(PathBuf::from(String::from_utf8_lossy(text).into_owned()));
        } else if kind == PT_DYNAMIC {
            // Entries of 16 bytes (d_tag, d_val), up to DT_NULL.
            let len = usize::try_from(len).unwrap_or(usize::MAX).min(DYNAMIC_MAX) / 16 * 16;
            let raw = read(off, len).ok_or_else(not_elf)?;
            let tags = raw.chunks_exact(16).map_while(|e| u64_at(e, 0).filter(|t| *t != DT_NULL));
            found.audit |= tags.into_iter().any(|t| t == DT_AUDIT || t == DT_DEPAUDIT);
        }
    }
    Ok(Some(found))
}

/// `program` opened to be read, if it is a regular file: a FIFO (or a device) as the program is
/// refused, not read from, which would wait for good (an outside review).
fn open_regular(program: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new().read(true).custom_flags(nix::libc::O_NONBLOCK).open(program)?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    Ok(file)
}

/// The interpreter a `#!` script's first line names (`/bin/sh` of `#!/bin/sh -e`), if the held
/// `program` ([`hold_program`]) is one; `None` for any other file, or one that cannot be read.
pub(crate) fn script_interpreter(program: &OwnedFd) -> Option<PathBuf> {
    let mut head = [0u8; 256];
    let n = std::io::Read::read(&mut open_regular(&fd_path(program)).ok()?, &mut head).ok()?;
    let line = head[..n].strip_prefix(b"#!")?.split(|b| *b == b'\n').next()?;
    let text = std::str::from_utf8(line).ok()?;
    text.split_whitespace().next().map(PathBuf::from)
}

/// Where a system keeps its libraries and loader.
const LIBRARY_DIRS: [&str; 8] =
    ["/lib/", "/lib64/", "/lib32/", "/libx32/", "/usr/lib/", "/usr/lib64/", "/usr/lib32/", "/usr/libx32/"];

/// How long the listing of a program's libraries may take (a `DT_NEEDED` naming a FIFO blocks it).
const LISTING_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A host file given to a sandbox read-only: where the sandbox shows it, and the file itself, held
/// (`O_PATH`) as it was checked and bound through its descriptor ([`fd_path`]). A file below the
/// program's folder may lie where another sandbox can write (the target folder): one swapped for a
/// link between the check and the bind had the sandbox given whatever the link named.
#[derive(Debug)]
pub(crate) struct HostFile {
    /// The path the loader looks for (`/lib64/ld-linux-x86-64.so.2`), where the sandbox shows it.
    pub shown: PathBuf,
    /// The file checked.
    pub file: OwnedFd,
}

/// The program at `program` (absolute), opened once (`O_PATH`, its links followed here only) if it
/// is a regular file: what is read, listed and bound from then on is this file, whatever is put at
/// its path since.
///
/// # Errors
/// When it cannot be opened or is not a regular file.
pub(crate) fn hold_program(program: &Path) -> Result<OwnedFd, Error> {
    let fd = nix::fcntl::open(program, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| io("open", program)(e.into()))?;
    let st = nix::sys::stat::fstat(&fd).map_err(|e| io("open", program)(e.into()))?;
    if st.st_mode & nix::libc::S_IFMT != nix::libc::S_IFREG {
        return Err(io("read", program)(std::io::Error::other("not a regular file")));
    }
    Ok(fd)
}

/// Every file the held program (`program` is how it was named, `held` the file, from
/// [`hold_program`]) needs from the host to start: the interpreter and the libraries it resolves (as
/// `ld.so --list` reports them), plus the loader's cache, each held as checked ([`HostFile`]). Empty
/// for a static program.
///
/// The program is not trusted (a test binary someone downloaded): its `PT_INTERP` names what would run
/// to list, and even the system's loader runs a program's audit module under `--list` (`DT_AUDIT`'s
/// `la_version`). So only the system's loader runs ([`system_loader`]), a program with an audit module
/// is refused, and the listing runs in a sandbox with a deadline that shows only the library folders,
/// the loader's cache and the program's folder, read-only, on an empty root. What it prints is not
/// trusted either: only ELF files anyone may read, in the system's library folders (none of whose
/// folders anyone but root may write) or below the program's own folder, are kept
/// ([`trusted_library`]), so a program cannot have a host file bound into its sandbox by naming it.
///
/// # Errors
/// When the program is unreadable, or its libraries cannot be listed.
pub(crate) fn closure(program: &Path, held: &OwnedFd) -> Result<Vec<HostFile>, Error> {
    let Some(Dynamic { interpreter: Some(named), audit }) = dynamic(&fd_path(held), program)? else {
        return Ok(Vec::new());
    };
    // Where the file held lies: its folder is the program's own.
    let real = held_path(held);
    let listing = |reason: String| Error::Libraries { program: real.clone(), reason };
    // The program chooses its interpreter: only the system's loader is run (the twelfth outside
    // review: a program naming itself ran its own code as the listing, as root inside).
    if system_loader(&named).is_none() {
        return Err(listing(format!(
            "its ELF interpreter `{}` is not the system's loader (a root-owned `ld-*` file in {}, in folders \
             only root may write); sandbox-run runs no other program to list a program's libraries",
            named.display(),
            LIBRARY_DIRS.join(", ")
        )));
    }
    // glibc's loader runs a program's audit module before it lists anything.
    if audit {
        return Err(listing(
            "it names an audit module (DT_AUDIT or DT_DEPAUDIT), which the loader would run while it lists \
             the program's libraries; link it without one (`--audit`, `--depaudit`)"
                .to_owned(),
        ));
    }
    let own = real.parent().filter(|p| *p != Path::new("/"));
    let shown = real.display().to_string();
    // The listing sees the library folders, the loader's cache and the program's folder, read-only,
    // on an empty root: nothing else of the host (the same review: it saw the host's root as root,
    // /etc/shadow and /root included, and its output chose files to bind).
    let empty = tempfile::Builder::new()
        .prefix("sandbox-run-listing-")
        .tempdir()
        .map_err(|e| listing(format!("cannot make an empty root for the listing: {e}")))?;
    // Where the sandbox writes its hostname and hosts file.
    std::fs::create_dir(empty.path().join("etc")).map_err(|e| listing(format!("cannot make an empty root: {e}")))?;
    let mut views: Vec<(PathBuf, PathBuf)> = LIBRARY_DIRS
        .iter()
        .map(|d| PathBuf::from(d.trim_end_matches('/')))
        .chain([PathBuf::from("/etc/ld.so.cache")])
        .filter(|p| p.exists())
        .map(|p| (p.clone(), p))
        .chain(own.map(|o| (o.to_owned(), o.to_owned())))
        .chain([(fd_path(held), real.clone())])
        .collect();
    views.sort_by_key(|(_, target)| target.components().count());
    let mut builder =
        sandbox::Sandbox::builder().rootfs_dir(empty.path()).network(sandbox::Network::None).timeout(LISTING_TIMEOUT);
    for (source, target) in views {
        builder = builder.mount(sandbox::Mount::bind(source, target.display().to_string()).read_only());
    }
    let sb = builder.build().map_err(|e| listing(sandbox::error_chain(&e)))?;
    // ld.so(8): `--list` prints where each library was found.
    let out = crate::capped::output(sb.command(named.display().to_string()).args(["--list", shown.as_str()]))
        .map_err(|e| listing(sandbox::error_chain(&e)))?;
    if !out.status.success() {
        let said = String::from_utf8_lossy(&out.stderr);
        return Err(listing(format!(
            "its ELF interpreter could not list its libraries ({}): {}",
            out.status,
            said.trim()
        )));
    }
    let mut files: Vec<HostFile> = Vec::new();
    let mut keep = |path: &Path| {
        if !files.iter().any(|f| f.shown == path)
            && let Some(file) = trusted_library(path, own)
        {
            files.push(HostFile { shown: path.to_owned(), file });
        }
    };
    keep(&named);
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        // "\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)" or "\t/lib64/ld-linux-x86-64.so.2 (0x…)":
        // the address last, the path after the first "=> " (a folder's name may hold both).
        let Some((text, _)) = line.trim_start().rsplit_once(" (0x") else { continue };
        let path = Path::new(text.split_once("=> ").map_or(text, |(_, p)| p));
        if path.is_absolute() {
            keep(path);
        }
    }
    // The glibc loader finds libraries outside /lib and /usr/lib through its cache (root's, in /etc).
    let cache = Path::new("/etc/ld.so.cache");
    if let Ok(file) = nix::fcntl::open(cache, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty()) {
        files.push(HostFile { shown: cache.to_owned(), file });
    }
    Ok(files)
}

/// `path`, held (`O_PATH`, links followed once, here), if it may be bound into a program's sandbox as
/// one of its libraries: an ELF regular file that anyone on the host may read, either below the
/// program's own folder `own` (through folders anyone may enter), or in one of [`LIBRARY_DIRS`] where
/// neither it nor any folder above it lets anyone but root write. Every check is made on the file
/// held. (The twelfth outside review: a root-only core dump in a root-only folder below the
/// program's, named in the listing, was bound in and read.)
fn trusted_library(path: &Path, own: Option<&Path>) -> Option<OwnedFd> {
    use std::os::unix::fs::MetadataExt;
    let file = nix::fcntl::open(path, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty()).ok()?;
    let st = nix::sys::stat::fstat(&file).ok()?;
    let everyones = st.st_mode & 0o004 != 0;
    if st.st_mode & nix::libc::S_IFMT != nix::libc::S_IFREG || !everyones || !is_elf(&fd_path(&file)) {
        return None;
    }
    let real = std::fs::read_link(fd_path(&file)).ok()?;
    if let Some(own) = own.filter(|o| real.starts_with(o)) {
        let enterable = |p: &Path| std::fs::metadata(p).is_ok_and(|m| m.mode() & 0o001 != 0);
        let below = real.ancestors().skip(1).take_while(|a| *a != own);
        return below.into_iter().all(enterable).then_some(file);
    }
    // Root's, as every folder above it, which no one else can change: their paths stay as checked.
    let roots = |p: &Path| std::fs::metadata(p).is_ok_and(|m| m.uid() == 0 && m.mode() & 0o022 == 0);
    let trusted = LIBRARY_DIRS.iter().any(|d| real.starts_with(d)) && real.ancestors().all(roots);
    trusted.then_some(file)
}

/// The program's interpreter `named`, held, if it is the system's loader: a library [`trusted_library`]
/// keeps in the system's folders (not beside the program) whose file is named as loaders are
/// (`ld-linux-x86-64.so.2`, `ld-linux-aarch64.so.1`, `ld64.so.2`, `ld-musl-x86_64.so.1`), as the link
/// the program names and as the file it leads to.
fn system_loader(named: &Path) -> Option<OwnedFd> {
    let loader_like = |p: &Path| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("ld"));
    let file = trusted_library(named, None)?;
    (loader_like(named) && loader_like(&held_path(&file))).then_some(file)
}

/// Whether `path` starts as an ELF file does.
fn is_elf(path: &Path) -> bool {
    let mut magic = [0u8; 4];
    open_regular(path).and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic)).is_ok() && &magic == b"\x7fELF"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_test_binary_has_an_interpreter_and_libc() {
        let Ok(exe) = std::env::current_exe() else { return };
        let held = hold_program(&exe).expect("hold");
        let files = closure(&exe, &held).unwrap_or_default();
        let shown: Vec<String> = files.iter().map(|f| f.shown.display().to_string()).collect();
        assert!(shown.first().is_some_and(|f| f.contains("ld-linux")), "{shown:?}");
        assert!(shown.iter().any(|f| f.contains("libc.so")), "{shown:?}");
    }

    #[test]
    fn a_script_has_no_interpreter_to_bring_and_other_files_are_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let script = dir.path().join("script");
        std::fs::write(&script, "#!/bin/sh\n").expect("write");
        assert_eq!(interpreter(&script).ok(), Some(None));
        let text = dir.path().join("notes");
        std::fs::write(&text, "not a program\n").expect("write");
        assert!(interpreter(&text).is_err());
        // A FIFO is refused, not read from (which would wait for good); so is a device.
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
        assert!(interpreter(&fifo).is_err() && hold_program(&fifo).is_err());
        assert!(interpreter(Path::new("/dev/zero")).is_err());
    }

    /// A library beside the program is held as it was checked: a link put at its path afterwards (by a
    /// sandbox that can write the program's folder) changes neither what the held file reads nor, were
    /// it checked again, the verdict (the link leads out of the folder, to no system library).
    #[test]
    fn a_library_is_held_as_checked_and_a_link_out_of_the_folder_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let own = tempfile::tempdir().expect("tempdir");
        let elsewhere = tempfile::tempdir().expect("tempdir");
        let exe = std::env::current_exe().expect("current_exe");
        let lib = own.path().join("libx.so");
        std::fs::copy(&exe, &lib).expect("copy");
        let secret = elsewhere.path().join("secret");
        std::fs::write(&secret, "TOPSECRET").expect("write");
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let real_own = std::fs::canonicalize(own.path()).expect("canonicalize");

        let held = trusted_library(&lib, Some(&real_own)).expect("an ELF file beside the program is kept");
        std::fs::remove_file(&lib).expect("remove");
        std::os::unix::fs::symlink(&secret, &lib).expect("symlink");
        let mut magic = [0u8; 4];
        let mut read = open_regular(&fd_path(&held)).expect("reopen the held file");
        std::io::Read::read_exact(&mut read, &mut magic).expect("read");
        assert_eq!(&magic, b"\x7fELF", "the held file is the library checked, not what its path names now");
        assert!(trusted_library(&lib, Some(&real_own)).is_none(), "a link out of the program's folder is kept");
        // Nor a file that is not ELF, beside the program or not.
        std::fs::write(own.path().join("notes"), "text").expect("write");
        assert!(trusted_library(&own.path().join("notes"), Some(&real_own)).is_none());
    }

    #[test]
    fn only_the_headers_of_a_huge_program_are_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let exe = std::env::current_exe().expect("current_exe");
        let copy = dir.path().join("huge");
        std::fs::copy(&exe, &copy).expect("copy");
        // 64 GiB, sparse: read whole, it would not fit in memory.
        std::fs::OpenOptions::new().write(true).open(&copy).expect("open").set_len(64 << 30).expect("grow");
        let interp = interpreter(&copy).expect("read").expect("an interpreter");
        assert!(interp.to_string_lossy().contains("ld-linux"), "{}", interp.display());
    }
}
