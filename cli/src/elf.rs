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

/// Every file the program needs from the host to start: the interpreter and the libraries it resolves
/// (as `ld.so --list` reports them), plus the loader's cache. Empty for a static program.
///
/// # Errors
/// When the program is unreadable or the interpreter cannot list its libraries.
pub fn closure(program: &Path) -> Result<Vec<PathBuf>, Error> {
    let Some(interp) = interpreter(program)? else { return Ok(Vec::new()) };
    // ld.so(8): `--list` loads the libraries and prints where each was found, without running the program.
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
    let mut files = vec![interp];
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        // "\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)" or "\t/lib64/ld-linux-x86-64.so.2 (0x…)"
        let path = line.split("=>").last().unwrap_or_default().trim();
        let path = path.split(" (").next().unwrap_or_default();
        if path.starts_with('/') && !files.iter().any(|f| f == Path::new(path)) {
            files.push(PathBuf::from(path));
        }
    }
    // The glibc loader finds libraries outside /lib and /usr/lib through its cache.
    if Path::new("/etc/ld.so.cache").exists() {
        files.push(PathBuf::from("/etc/ld.so.cache"));
    }
    Ok(files)
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
