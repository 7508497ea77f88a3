//! What a host-built program needs to start on another rootfs: its ELF interpreter (`PT_INTERP`) and the
//! shared libraries that interpreter loads for it.

use std::path::{Path, PathBuf};

use crate::Error;
use crate::error::io;

const PT_INTERP: u32 = 3;

/// The program's ELF interpreter (e.g. `/lib64/ld-linux-x86-64.so.2`), or `None` for a static program.
///
/// # Errors
/// When the file cannot be read, or is not a 64-bit little-endian ELF file.
pub fn interpreter(program: &Path) -> Result<Option<PathBuf>, Error> {
    let bytes = std::fs::read(program).map_err(io("read", program))?;
    let not_elf =
        || Error::Option { option: "program", value: program.display().to_string(), expected: "an ELF64 executable" };
    if bytes.get(..6) != Some(b"\x7fELF\x02\x01".as_slice()) {
        return Err(not_elf());
    }
    let u16_at = |o: usize| bytes.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]) as usize);
    let u32_at = |o: usize| bytes.get(o..o + 4).and_then(|b| b.try_into().ok()).map(u32::from_le_bytes);
    let u64_at = |o: usize| bytes.get(o..o + 8).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes);
    // elf(5): e_phoff at 0x20, e_phentsize at 0x36, e_phnum at 0x38; p_type at +0, p_offset at +8, p_filesz at +0x20.
    let (phoff, phentsize, phnum) = match (u64_at(0x20), u16_at(0x36), u16_at(0x38)) {
        (Some(o), Some(s), Some(n)) => (o as usize, s, n),
        _ => return Err(not_elf()),
    };
    for i in 0..phnum {
        let ph = phoff.saturating_add(i.saturating_mul(phentsize));
        if u32_at(ph) != Some(PT_INTERP) {
            continue;
        }
        let (Some(off), Some(len)) = (u64_at(ph + 8), u64_at(ph + 0x20)) else { return Err(not_elf()) };
        let raw = bytes.get(off as usize..(off as usize).saturating_add(len as usize)).ok_or_else(not_elf)?;
        let text = raw.split(|b| *b == 0).next().unwrap_or_default();
        return Ok(Some(PathBuf::from(String::from_utf8_lossy(text).into_owned())));
    }
    Ok(None)
}

/// Where a system's ELF loader lives: the only interpreters run on the host.
const LOADER_DIRS: [&str; 8] =
    ["/lib/", "/lib64/", "/lib32/", "/libx32/", "/usr/lib/", "/usr/lib64/", "/usr/lib32/", "/usr/libx32/"];

/// Every file the program needs from the host to start: the interpreter and the libraries it resolves
/// (as `ld.so --list` reports them), plus the loader's cache. Empty for a static program.
///
/// The program is not trusted (a test binary someone downloaded): its `PT_INTERP` names what would run
/// on the host, so only the system's own loader is run (a root-owned file in a library folder, none of
/// whose folders others may write), and only with `--list`, which maps the libraries and runs none of
/// their code nor the program's (ld.so(8)). Of what it lists, only ELF files are kept: a program cannot
/// have a host secret bound into its sandbox by naming it.
///
/// # Errors
/// When the program is unreadable, its interpreter is not the system's loader, or the interpreter
/// cannot list its libraries.
pub fn closure(program: &Path) -> Result<Vec<PathBuf>, Error> {
    let Some(named) = interpreter(program)? else { return Ok(Vec::new()) };
    let interp = system_loader(&named).ok_or_else(|| Error::Option {
        option: "program",
        value: format!("{} (ELF interpreter {})", program.display(), named.display()),
        expected: "a program whose ELF interpreter is the system's loader (root's, in /lib or /usr/lib)",
    })?;
    let out = std::process::Command::new(&interp)
        .arg("--list")
        .arg(program)
        .env_clear()
        .output()
        .map_err(io("run the ELF interpreter", &interp))?;
    if !out.status.success() {
        return Err(Error::Option {
            option: "program",
            value: program.display().to_string(),
            expected: "a program whose libraries the host's loader can resolve (`ld.so --list` failed)",
        });
    }
    let mut files = vec![named];
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        // "\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)" or "\t/lib64/ld-linux-x86-64.so.2 (0x…)"
        let path = line.split("=>").last().unwrap_or_default().trim();
        let path = Path::new(path.split(" (").next().unwrap_or_default());
        if path.is_absolute() && !files.iter().any(|f| f == path) && is_elf(path) {
            files.push(path.to_owned());
        }
    }
    // The glibc loader finds libraries outside /lib and /usr/lib through its cache.
    if Path::new("/etc/ld.so.cache").exists() {
        files.push(PathBuf::from("/etc/ld.so.cache"));
    }
    Ok(files)
}

/// `named`, resolved, if it is the system's loader: a regular file of root's, in one of
/// [`LOADER_DIRS`], that neither it nor any folder above it lets anyone but root write.
fn system_loader(named: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let real = std::fs::canonicalize(named).ok()?;
    if !LOADER_DIRS.iter().any(|d| real.starts_with(d)) {
        return None;
    }
    let roots = |p: &Path| std::fs::metadata(p).is_ok_and(|m| m.uid() == 0 && m.mode() & 0o022 == 0);
    (std::fs::metadata(&real).is_ok_and(|m| m.is_file()) && real.ancestors().all(roots)).then_some(real)
}

/// Whether `path` is a regular file that starts as an ELF file does.
fn is_elf(path: &Path) -> bool {
    let mut magic = [0u8; 4];
    std::fs::File::open(path).and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic)).is_ok()
        && std::fs::metadata(path).is_ok_and(|m| m.is_file())
        && &magic == b"\x7fELF"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_test_binary_has_an_interpreter_and_libc() {
        let Ok(exe) = std::env::current_exe() else { return };
        let files = closure(&exe).unwrap_or_default();
        assert!(files.first().is_some_and(|f| f.to_string_lossy().contains("ld-linux")), "{files:?}");
        assert!(files.iter().any(|f| f.to_string_lossy().contains("libc.so")), "{files:?}");
    }

    #[test]
    fn not_elf_is_an_error() {
        let dir = tempfile::tempdir().ok();
        let Some(dir) = dir else { return };
        let f = dir.path().join("script");
        let _ = std::fs::write(&f, "#!/bin/sh\n");
        assert!(interpreter(&f).is_err());
    }
}
