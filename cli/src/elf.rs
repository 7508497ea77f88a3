//! What a host-built program's ELF headers say about how it is loaded: its interpreter (`PT_INTERP`),
//! the shared libraries it needs (`DT_NEEDED`) and where it says to look for them (`DT_RPATH`,
//! `DT_RUNPATH`). Only those parts are read, never the whole file, and nothing is run.

use std::os::fd::OwnedFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use crate::Error;
use crate::error::io;
use crate::host_path::fd_path;

// elf(5): program header types and dynamic section tags.
const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const DT_NULL: u64 = 0;
const DT_NEEDED: u64 = 1;
const DT_STRTAB: u64 = 5;
const DT_STRSZ: u64 = 10;
const DT_RPATH: u64 = 15;
const DT_RUNPATH: u64 = 29;

/// The most of a dynamic section read (a program's holds a few dozen 16-byte entries).
const DYNAMIC_MAX: usize = 1 << 20;

/// The most libraries one object may name, and the most bytes of their names in all (a program's
/// are a few hundred): a header naming more makes the search look at the first only.
const NEEDED_MAX: usize = 1024;
const NEEDED_BYTES: usize = 64 << 10;

/// The most folders one `DT_RPATH` or `DT_RUNPATH` may list that are looked in.
const SEARCH_PATHS_MAX: usize = 64;

/// The longest name or search path read from the string table (PATH_MAX).
const STRING_MAX: usize = 4096;

/// The program's ELF interpreter (e.g. `/lib64/ld-linux-x86-64.so.2`), or `None` for a static program
/// and for a script (`#!`: the program its first line names is the rootfs's, e.g. Alpine's `/bin/sh`).
///
/// # Errors
/// When the file cannot be read, or is neither a script nor a 64-bit little-endian ELF file.
pub fn interpreter(program: &Path) -> Result<Option<PathBuf>, Error> {
    Ok(object(program, program)?.and_then(|o| o.interpreter))
}

/// What an ELF object's headers say about how it is loaded (a 64-bit little-endian one).
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Object {
    /// `e_machine`: a library for another machine is passed over, as the loader does.
    pub machine: u16,
    /// `PT_INTERP`: the loader, for a dynamic program.
    pub interpreter: Option<PathBuf>,
    /// `DT_NEEDED`: the libraries it needs, by name (`libc.so.6`) or path.
    pub needed: Vec<String>,
    /// `DT_RPATH`: folders to look in first (and, from the program, for its libraries' needs too).
    pub rpath: Vec<String>,
    /// `DT_RUNPATH`: folders to look in for its own needs; with it, `DT_RPATH` is not looked at.
    pub runpath: Option<Vec<String>>,
}

/// [`Object`] of the file at `open` (a held file's [`fd_path`]), named `shown` in messages; `None`
/// for a script.
///
/// # Errors
/// When the file cannot be read, or is neither a script nor a 64-bit little-endian ELF file.
pub(crate) fn object(open: &Path, shown: &Path) -> Result<Option<Object>, Error> {
    let file = open_regular(open).map_err(io("read", shown))?;
    let not_elf = || Error::CannotExecute {
        program: shown.to_owned(),
        reason: "it is neither an ELF64 executable nor a #! script",
    };
    // Only the parts named below are read, never the whole file (an outside review: a sparse file of
    // 3 GB with an ELF header was read into memory whole).
    let read = |offset: u64, len: usize| -> Option<Vec<u8>> {
        let mut bytes = vec![0u8; len];
        file.read_exact_at(&mut bytes, offset).ok().map(|()| bytes)
    };
    let mut head = [0u8; 64];
    let got = file.read_at(&mut head, 0).map_err(io("read", shown))?;
    if head[..got].starts_with(b"#!") {
        return Ok(None);
    }
    if got < head.len() || !head.starts_with(b"\x7fELF\x02\x01") {
        return Err(not_elf());
    }
    let mut found = Object { machine: u16_at(&head, 0x12).unwrap_or_default() as u16, ..Object::default() };
    // e_phoff at 0x20, e_phentsize at 0x36, e_phnum at 0x38; p_type at +0, p_offset at +8, p_vaddr at
    // +0x10, p_filesz at +0x20.
    let (phoff, phentsize, phnum) = match (u64_at(&head, 0x20), u16_at(&head, 0x36), u16_at(&head, 0x38)) {
        // An ELF64 program header is 56 bytes: a larger size would only make the table big to read.
        (Some(o), Some(s), Some(n)) if (0x38..=0x100).contains(&s) => (o, s, n),
        (_, _, Some(0)) => return Ok(Some(found)),
        _ => return Err(not_elf()),
    };
    let table = read(phoff, phentsize * phnum).ok_or_else(not_elf)?;
    // (file offset, virtual address, size in the file) of each loaded segment, and the dynamic section's.
    let mut loads = Vec::new();
    let mut dynamic = None;
    for ph in table.chunks_exact(phentsize) {
        let (Some(kind), Some(off), Some(vaddr), Some(len)) =
            (u32_at(ph, 0), u64_at(ph, 8), u64_at(ph, 0x10), u64_at(ph, 0x20))
        else {
            return Err(not_elf());
        };
        match kind {
            PT_INTERP if found.interpreter.is_none() => {
                let raw = read(off, clamp(len, STRING_MAX)).ok_or_else(not_elf)?;
                found.interpreter = Some(PathBuf::from(String::from_utf8_lossy(c_string(&raw)).into_owned()));
            }
            PT_LOAD => loads.push((off, vaddr, len)),
            PT_DYNAMIC if dynamic.is_none() => dynamic = Some((off, len)),
            _ => {}
        }
    }
    if let Some((off, len)) = dynamic {
        let raw = read(off, clamp(len, DYNAMIC_MAX) / 16 * 16).ok_or_else(not_elf)?;
        let entries: Vec<(u64, u64)> = raw
            .chunks_exact(16)
            .map_while(|e| Some((u64_at(e, 0)?, u64_at(e, 8)?)).filter(|(tag, _)| *tag != DT_NULL))
            .collect();
        let tag = |t: u64| entries.iter().find(|(tag, _)| *tag == t).map(|(_, v)| *v);
        // The string table is named by its address once loaded: found in the segment that loads it.
        let strings = tag(DT_STRTAB).and_then(|addr| {
            let (off, vaddr, _) = loads.iter().find(|(_, v, n)| (*v..v.saturating_add(*n)).contains(&addr))?;
            off.checked_add(addr - vaddr)
        });
        if let Some(strings) = strings {
            let size = tag(DT_STRSZ).unwrap_or(u64::MAX);
            let string = |at: u64| -> Option<String> {
                let len = clamp(size.checked_sub(at)?, STRING_MAX);
                let mut bytes = vec![0u8; len];
                let n = file.read_at(&mut bytes, strings.checked_add(at)?).ok()?;
                String::from_utf8(c_string(&bytes[..n]).to_vec()).ok()
            };
            // Each folder once, in order.
            let paths = |t: u64| {
                tag(t).and_then(string).map(|s| {
                    let mut list: Vec<String> = Vec::new();
                    for p in s.split(':') {
                        if list.len() == SEARCH_PATHS_MAX {
                            break;
                        }
                        if !list.iter().any(|q| q == p) {
                            list.push(p.to_owned());
                        }
                    }
                    list
                })
            };
            // Each name once, and no more of them than NEEDED_MAX and NEEDED_BYTES allow.
            let mut bytes = 0;
            for (_, at) in entries.iter().filter(|(t, _)| *t == DT_NEEDED).take(NEEDED_MAX) {
                let Some(name) = string(*at) else { continue };
                bytes += name.len();
                if bytes > NEEDED_BYTES {
                    break;
                }
                if !found.needed.contains(&name) {
                    found.needed.push(name);
                }
            }
            found.rpath = paths(DT_RPATH).unwrap_or_default();
            found.runpath = paths(DT_RUNPATH);
        }
    }
    Ok(Some(found))
}

/// The bytes of `raw` up to its first NUL.
fn c_string(raw: &[u8]) -> &[u8] {
    raw.split(|b| *b == 0).next().unwrap_or_default()
}

/// `len` as a `usize`, at most `max`.
fn clamp(len: u64, max: usize) -> usize {
    usize::try_from(len).unwrap_or(usize::MAX).min(max)
}

fn u16_at(b: &[u8], o: usize) -> Option<usize> {
    b.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]) as usize)
}

fn u32_at(b: &[u8], o: usize) -> Option<u32> {
    b.get(o..o + 4).and_then(|b| b.try_into().ok()).map(u32::from_le_bytes)
}

fn u64_at(b: &[u8], o: usize) -> Option<u64> {
    b.get(o..o + 8).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes)
}

/// `path` opened to be read, if it is a regular file: looked at first without opening it for reading
/// (`O_PATH`), so that a FIFO or a device is refused, never opened (which wakes a FIFO's writers, and
/// has effects of its own for some devices: the fourteenth outside review) nor read (which would wait
/// for good: an earlier one).
pub(crate) fn open_regular(path: &Path) -> std::io::Result<std::fs::File> {
    open_regular_if(path, |_| true)
}

/// [`open_regular`], if `allowed` says so of the file's status (before it is opened for reading).
pub(crate) fn open_regular_if(
    path: &Path,
    allowed: impl FnOnce(&nix::sys::stat::FileStat) -> bool,
) -> std::io::Result<std::fs::File> {
    let held = nix::fcntl::open(path, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty())?;
    let st = nix::sys::stat::fstat(&held)?;
    if st.st_mode & nix::libc::S_IFMT != nix::libc::S_IFREG {
        return Err(std::io::Error::other("not a regular file"));
    }
    if !allowed(&st) {
        return Err(std::io::Error::from(std::io::ErrorKind::PermissionDenied));
    }
    let flags = OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC;
    Ok(std::fs::File::from(nix::fcntl::open(&fd_path(&held), flags, Mode::empty())?))
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

/// The program at `program` (absolute), opened once (`O_PATH`, its links followed here only) if it
/// is a regular file: what is read and bound from then on is this file, whatever is put at its path
/// since.
///
/// # Errors
/// When it cannot be opened or is not a regular file.
pub(crate) fn hold_program(program: &Path) -> Result<OwnedFd, Error> {
    let fd = nix::fcntl::open(program, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| io("open", program)(e.into()))?;
    let st = nix::sys::stat::fstat(&fd).map_err(|e| io("open", program)(e.into()))?;
    if st.st_mode & nix::libc::S_IFMT != nix::libc::S_IFREG {
        return Err(Error::CannotExecute { program: program.to_owned(), reason: "it is not a regular file" });
    }
    Ok(fd)
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn this_test_binary_needs_libc_and_names_its_machine() {
        let exe = std::env::current_exe().expect("current_exe");
        let found = object(&exe, &exe).expect("read").expect("an ELF file");
        assert!(found.interpreter.is_some_and(|i| i.to_string_lossy().contains("ld")));
        assert!(found.needed.iter().any(|n| n.starts_with("libc.so")), "{:?}", found.needed);
        #[cfg(target_arch = "x86_64")]
        assert_eq!(found.machine, 62);
    }

    /// Offsets a header gives are not trusted in arithmetic (the sixteenth outside review: a loaded
    /// segment's offset of 2^64 - 1 overflowed, and sandbox-run panicked): such a program names no
    /// library that can be found.
    #[test]
    fn a_header_s_offsets_cannot_overflow() {
        let dir = tempfile::tempdir().expect("tempdir");
        let copy = dir.path().join("odd");
        let mut elf = std::fs::read(std::env::current_exe().expect("current_exe")).expect("read");
        let (phoff, size, count) = (
            u64_at(&elf, 0x20).expect("e_phoff") as usize,
            u16_at(&elf, 0x36).expect("e_phentsize"),
            u16_at(&elf, 0x38).expect("e_phnum"),
        );
        for ph in (0..count).map(|i| phoff + i * size) {
            if u32_at(&elf, ph) == Some(PT_LOAD) {
                elf[ph + 8..ph + 16].copy_from_slice(&u64::MAX.to_le_bytes());
            }
        }
        std::fs::write(&copy, &elf).expect("write");
        let found = object(&copy, &copy).expect("read").expect("an ELF file");
        assert!(found.needed.is_empty(), "{:?}", found.needed);
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
