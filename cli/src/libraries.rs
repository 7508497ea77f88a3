//! The host files a host-built program needs to start on another rootfs: its loader and the shared
//! libraries the loader would find for it, found as glibc's loader searches (ld.so(8)), from the ELF
//! headers alone: nothing of the program's is run to learn them.
//!
//! The program is not trusted (a test binary someone downloaded). Running a loader to list its
//! libraries (`ld.so --list`) ran code of its choosing: the interpreter it names, or an audit module
//! (`DT_AUDIT`, whose code glibc's loader runs even under `--list`, and which a patched header hid
//! from a check); in a sandbox, that code still read what the listing could see and chose, by the
//! files it listed, what to bind into the program's sandbox (the twelfth and thirteenth outside
//! reviews). Here the search only reads headers and the loader's cache, and whatever it finds is
//! bound only if anyone on the host may read it ([`trusted_library`]): a program can make the search
//! find nothing useful, never anything secret.

use std::cell::Cell;
use std::collections::{HashSet, VecDeque};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use crate::Error;
use crate::elf::{Object, open_regular, open_regular_if};
use crate::host_path::{fd_path, held_path};

/// Where a system keeps its libraries and loader.
const LIBRARY_DIRS: [&str; 8] =
    ["/lib/", "/lib64/", "/lib32/", "/libx32/", "/usr/lib/", "/usr/lib64/", "/usr/lib32/", "/usr/libx32/"];

/// The loader's cache of where each library is (ldconfig(8)).
const CACHE: &str = "/etc/ld.so.cache";

/// The most objects (the program and its libraries) looked at for one program.
const OBJECTS_MAX: usize = 512;

/// The largest loader's cache read (a system's is tens of KiB).
const CACHE_MAX: u64 = 16 << 20;

/// The most paths looked at for one program's libraries (a program's search looks at a few hundred):
/// a header listing thousands of folders and names made one search take minutes (the fourteenth
/// outside review).
const PROBES_MAX: usize = 16384;

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

/// Every file the held program (`program` is how it was named, `held` the file, from
/// [`crate::elf::hold_program`]) needs from the host to start: its interpreter, the libraries the
/// loader would load for it, and the loader's cache, each held as checked ([`HostFile`]). Empty for a
/// static program or a script. A library that cannot be found, or that [`trusted_library`] does not
/// give, is left out: the loader inside then names it, as it would on the host.
///
/// # Errors
/// When the program cannot be read, or its interpreter is not a file a sandbox may be given.
///
/// `library_path`: the `LD_LIBRARY_PATH` the program's sandbox is given, if any: its folders are
/// looked in as the loader does (after the `DT_RPATH`s, before the `DT_RUNPATH`).
pub(crate) fn closure(program: &Path, held: &OwnedFd, library_path: Option<&str>) -> Result<Vec<HostFile>, Error> {
    let Some(main) = crate::elf::object(&fd_path(held), program)? else { return Ok(Vec::new()) };
    let Some(interpreter) = main.interpreter.clone() else { return Ok(Vec::new()) };
    // Where the file held lies: its folder is the program's own, and its `$ORIGIN`.
    let real = held_path(held);
    let origin = real.parent().unwrap_or(Path::new("/")).to_owned();
    let own = Some(origin.as_path()).filter(|o| *o != Path::new("/"));
    let Some(loader) = trusted_library(&interpreter, own) else {
        return Err(Error::Libraries {
            program: real.clone(),
            reason: format!(
                "its ELF interpreter `{}` is not a file a sandbox may be given: an ELF file anyone may read, \
                 in the system's library folders ({}) or below the program's folder",
                interpreter.display(),
                LIBRARY_DIRS.join(", ")
            ),
        });
    };
    let mut files = vec![HostFile { shown: interpreter, file: loader }];
    let cache = Cache::read(Path::new(CACHE));
    let search = Search {
        machine: main.machine,
        // The program's DT_RPATH is looked in for every library's needs, unless it has a DT_RUNPATH.
        inherited: if main.runpath.is_none() { main.rpath.clone() } else { Vec::new() },
        // As the loader splits it (`:` or `;`); an empty or relative entry names the working
        // folder, which is not the program's inside: passed over.
        library_path: library_path
            .map(|paths| paths.split([':', ';']).filter_map(|d| expand(d, &origin)).collect())
            .unwrap_or_default(),
        main_origin: origin.clone(),
        cache: cache.as_ref(),
        probes: Cell::new(PROBES_MAX),
    };
    // The loader is loaded already: a library needing it by name (libc needs `ld-linux-x86-64.so.2`)
    // gets that one.
    let mut seen: HashSet<String> =
        files[0].shown.file_name().map(|n| n.to_string_lossy().into_owned()).into_iter().collect();
    let mut queue: VecDeque<(PathBuf, Object)> = VecDeque::from([(origin.clone(), main)]);
    // Each file's needs are read once, whatever names lead to it (the loader too loads a file once).
    let mut read: HashSet<(u64, u64)> = HashSet::new();
    // Past OBJECTS_MAX the search stops; what was found is bound, the loader's cache with it.
    'search: while let Some((origin, object)) = queue.pop_front() {
        for name in &object.needed {
            // The loader loads a library once, whoever needs it.
            if !seen.insert(name.clone()) {
                continue;
            }
            let Some((path, found)) = search.find(name, &object, &origin) else { continue };
            let Some(file) = trusted_held(found, own) else { continue };
            let id = nix::sys::stat::fstat(&file).map(|st| (st.st_dev, st.st_ino));
            if read.len() < OBJECTS_MAX
                && id.is_ok_and(|id| read.insert(id))
                && let Ok(Some(needs)) = crate::elf::object(&fd_path(&file), &path)
            {
                let folder = path.parent().unwrap_or(Path::new("/")).to_owned();
                queue.push_back((folder, needs));
            }
            files.push(HostFile { shown: path, file });
            if files.len() > OBJECTS_MAX {
                break 'search;
            }
        }
    }
    if cache.is_some()
        && let Ok(file) = nix::fcntl::open(CACHE, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty())
    {
        files.push(HostFile { shown: PathBuf::from(CACHE), file });
    }
    Ok(files)
}

/// How the loader looks for a library (ld.so(8), "Description"), for one program.
struct Search<'a> {
    /// The program's machine: a library for another is passed over.
    machine: u16,
    /// The program's `DT_RPATH`, looked in for every object's needs unless it has a `DT_RUNPATH`.
    inherited: Vec<String>,
    /// The folders of the sandbox's `LD_LIBRARY_PATH` (`$ORIGIN` made the program's folder).
    library_path: Vec<PathBuf>,
    /// The program's folder, the `$ORIGIN` of `inherited`.
    main_origin: PathBuf,
    cache: Option<&'a Cache>,
    /// How many more paths may be looked at ([`PROBES_MAX`]).
    probes: Cell<usize>,
}

impl Search<'_> {
    /// Where the loader would find `name`, needed by `object` (which lies in `origin`): a path as
    /// given, else in the needing object's `DT_RPATH` (unless it has a `DT_RUNPATH`) and the
    /// program's, the sandbox's `LD_LIBRARY_PATH`, its `DT_RUNPATH`, the loader's cache, then the
    /// system's folders; the first file there that is an ELF object for the program's machine.
    fn find(&self, name: &str, object: &Object, origin: &Path) -> Option<(PathBuf, OwnedFd)> {
        let at = |path: PathBuf| self.loadable(&path).map(|file| (path, file));
        if name.contains('/') {
            let path = PathBuf::from(name);
            return if path.is_absolute() { at(path) } else { None };
        }
        let mut folders: Vec<PathBuf> = Vec::new();
        if object.runpath.is_none() {
            folders.extend(object.rpath.iter().filter_map(|d| expand(d, origin)));
            folders.extend(self.inherited.iter().filter_map(|d| expand(d, &self.main_origin)));
        }
        folders.extend(self.library_path.iter().cloned());
        folders.extend(object.runpath.iter().flatten().filter_map(|d| expand(d, origin)));
        let in_folders = folders.iter().find_map(|d| at(d.join(name)));
        in_folders
            .or_else(|| self.cache.and_then(|c| c.lookup(name)).and_then(at))
            .or_else(|| system_folders().into_iter().find_map(|d| at(d.join(name))))
    }

    /// `path`, held (`O_PATH`) as it was read, if it is a regular file holding a 64-bit little-endian
    /// ELF object for the program's machine, as the loader requires of a library it loads, and one
    /// anyone may read: no other is given to a sandbox ([`trusted_held`]), and none is read here
    /// (which of a root-only file's bytes are ELF told a program about it: the fourteenth outside
    /// review). `None` once the search has looked at [`PROBES_MAX`] paths.
    fn loadable(&self, path: &Path) -> Option<OwnedFd> {
        let left = self.probes.get().checked_sub(1)?;
        self.probes.set(left);
        let (held, mut head) = hold_regular(path)?;
        let mut bytes = [0u8; 20];
        std::io::Read::read_exact(&mut head, &mut bytes).ok()?;
        let elf = bytes.starts_with(b"\x7fELF\x02\x01") && u16::from_le_bytes([bytes[18], bytes[19]]) == self.machine;
        elf.then_some(held)
    }
}

/// A search folder of `DT_RPATH` or `DT_RUNPATH` with `$ORIGIN` (`${ORIGIN}`) made `origin`; `None`
/// for one that names another of the loader's variables (`$LIB`, `$PLATFORM`), or is relative (to
/// the working directory, which is not the program's inside).
fn expand(folder: &str, origin: &Path) -> Option<PathBuf> {
    let origin = origin.to_str()?;
    let expanded = folder.replace("${ORIGIN}", origin).replace("$ORIGIN", origin);
    if expanded.contains('$') || !expanded.starts_with('/') {
        return None;
    }
    // `$ORIGIN/../lib` as a path without `..` (the folder the sandbox is given the file at); `origin`
    // is a real folder, so its `..` is the one the kernel takes.
    let mut plain = PathBuf::from("/");
    for part in Path::new(&expanded).components() {
        match part {
            std::path::Component::ParentDir => {
                plain.pop();
            }
            std::path::Component::Normal(name) => plain.push(name),
            _ => {}
        }
    }
    Some(plain)
}

/// The folders the loader looks in last (its built-in `system_dirs`): Debian's multiarch folders,
/// then Fedora's and others'.
fn system_folders() -> Vec<PathBuf> {
    let triplet = format!("{}-linux-gnu", std::env::consts::ARCH);
    ["/lib/TRIPLET", "/usr/lib/TRIPLET", "/lib64", "/usr/lib64", "/lib", "/usr/lib"]
        .iter()
        .map(|d| PathBuf::from(d.replace("TRIPLET", &triplet)))
        .collect()
}

/// The loader's cache (`/etc/ld.so.cache`, glibc's format "glibc-ld.so.cache1.1": a header, entries
/// of 24 bytes and their strings; sysdeps/generic/dl-cache.h), for this machine's libraries.
#[derive(Debug)]
struct Cache {
    /// (name, path) of each library of this machine, in the cache's order.
    entries: Vec<(String, PathBuf)>,
}

/// The new format's magic and version.
const CACHE_MAGIC: &[u8] = b"glibc-ld.so.cache1.1";

/// The flags of an entry for this machine's libraries (dl-cache.h: `FLAG_ELF_LIBC6` with the
/// machine's `FLAG_*_LIB64`), or, elsewhere, of any glibc library.
fn cache_flags_match(flags: i32) -> bool {
    const FLAG_ELF_LIBC6: i32 = 0x0003;
    let wanted = match std::env::consts::ARCH {
        "x86_64" => Some(0x0300),
        "aarch64" => Some(0x0a00),
        _ => None,
    };
    flags & 0xff == FLAG_ELF_LIBC6 && wanted.is_none_or(|w| flags & 0xff00 == w)
}

impl Cache {
    /// The cache at `path`, if it is one this code reads.
    fn read(path: &Path) -> Option<Cache> {
        use std::io::Read;
        let mut bytes = Vec::new();
        open_regular(path).ok()?.take(CACHE_MAX).read_to_end(&mut bytes).ok()?;
        // After the old format's part, if the file has one: offsets count from the new header.
        let start = bytes.windows(CACHE_MAGIC.len()).position(|w| w == CACHE_MAGIC)?;
        let data = &bytes[start..];
        let word = |at: usize| data.get(at..at + 4).and_then(|b| b.try_into().ok()).map(u32::from_le_bytes);
        let string = |at: u32| -> Option<String> {
            let rest = data.get(usize::try_from(at).ok()?..)?;
            let end = rest.iter().position(|b| *b == 0)?;
            String::from_utf8(rest[..end].to_vec()).ok()
        };
        let count = usize::try_from(word(20)?).ok()?;
        let mut entries = Vec::new();
        for i in 0..count.min(1 << 20) {
            let at = 48 + i * 24;
            let (Some(flags), Some(key), Some(value)) = (word(at), word(at + 4), word(at + 8)) else { break };
            let hwcap = data.get(at + 16..at + 24).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes);
            // An entry with hardware capabilities names a variant (glibc-hwcaps) the loader picks only
            // on some processors; the plain one follows.
            if hwcap != Some(0) || !cache_flags_match(flags as i32) {
                continue;
            }
            if let (Some(name), Some(path)) = (string(key), string(value)) {
                entries.push((name, PathBuf::from(path)));
            }
        }
        Some(Cache { entries })
    }

    /// Where the cache says `name` is.
    fn lookup(&self, name: &str) -> Option<PathBuf> {
        self.entries.iter().find(|(n, _)| n == name).map(|(_, p)| p.clone())
    }
}

/// `path` (links followed once, here) held, and open for reading, if it is a regular file anyone may
/// read; nothing else is opened for reading (a FIFO's open wakes its writers: the fourteenth outside
/// review).
fn hold_regular(path: &Path) -> Option<(OwnedFd, std::fs::File)> {
    let held = nix::fcntl::open(path, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty()).ok()?;
    let read = open_regular_if(&fd_path(&held), |st| st.st_mode & 0o004 != 0).ok()?;
    Some((held, read))
}

/// `path`, held (`O_PATH`, links followed once, here), if it may be bound into a program's sandbox as
/// its loader: an ELF file, and one [`trusted_held`] gives.
fn trusted_library(path: &Path, own: Option<&Path>) -> Option<OwnedFd> {
    let (held, mut read) = hold_regular(path)?;
    let mut magic = [0u8; 4];
    std::io::Read::read_exact(&mut read, &mut magic).ok()?;
    (&magic == b"\x7fELF").then_some(())?;
    trusted_held(held, own)
}

/// `file` (held, a regular file anyone may read, [`hold_regular`]), if it may be bound into a
/// program's sandbox as one of its libraries: one anyone on the host may reach (every folder above it
/// one anyone may enter), either below the program's own folder `own`, or in one of [`LIBRARY_DIRS`]
/// where neither it nor any folder above it lets anyone but root write; and one its own path names
/// (the sandbox binds that path). Every check is made on the file held.
///
/// Outside reviews: a root-only core dump in a root-only folder below the program's was bound in (the
/// twelfth); a world-readable file in a folder only root may enter was too, and a file of another
/// mount namespace (through a link to `/proc/PID/root/…`) was checked there and bound from the host by
/// its path, which named a root-only file here (the fourteenth).
fn trusted_held(file: OwnedFd, own: Option<&Path>) -> Option<OwnedFd> {
    use std::os::unix::fs::MetadataExt;
    let st = nix::sys::stat::fstat(&file).ok()?;
    let everyones = st.st_mode & 0o004 != 0;
    if st.st_mode & nix::libc::S_IFMT != nix::libc::S_IFREG || !everyones {
        return None;
    }
    let real = std::fs::read_link(fd_path(&file)).ok()?;
    let same = std::fs::symlink_metadata(&real).is_ok_and(|m| (m.dev(), m.ino()) == (st.st_dev, st.st_ino));
    let enterable = |p: &Path| std::fs::metadata(p).is_ok_and(|m| m.mode() & 0o001 != 0);
    if !same || !real.ancestors().skip(1).all(enterable) {
        return None;
    }
    if own.is_some_and(|o| real.starts_with(o)) {
        return Some(file);
    }
    // Root's, as every folder above it, which no one else can change: their paths stay as checked.
    let roots = |p: &Path| std::fs::metadata(p).is_ok_and(|m| m.uid() == 0 && m.mode() & 0o022 == 0);
    let trusted = LIBRARY_DIRS.iter().any(|d| real.starts_with(d)) && real.ancestors().all(roots);
    trusted.then_some(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the system's loader lists for `program` (`ld.so --list`, run here on a trusted system
    /// program or this test binary): the paths it found, the loader first.
    fn listed_by_the_loader(program: &Path) -> Option<Vec<PathBuf>> {
        let interpreter = crate::elf::interpreter(program).ok()??;
        let out = std::process::Command::new(&interpreter).arg("--list").arg(program).output().ok()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let paths = text.lines().filter_map(|line| {
            let (text, _) = line.trim_start().rsplit_once(" (0x")?;
            let path = Path::new(text.split_once("=> ").map_or(text, |(_, p)| p));
            path.is_absolute().then(|| path.to_owned())
        });
        Some(paths.collect())
    }

    /// The search finds what the system's loader lists, for this test binary and for system programs
    /// with many libraries.
    #[test]
    fn finds_what_the_loader_lists() {
        let exe = std::env::current_exe().expect("current_exe");
        let candidates = [
            exe,
            PathBuf::from("/usr/bin/python3"),
            PathBuf::from("/usr/bin/ssh"),
            PathBuf::from("/usr/bin/qemu-system-x86_64"),
            PathBuf::from("/bin/ls"),
        ];
        let mut compared = 0;
        for program in candidates.iter().filter(|p| p.exists()) {
            let Some(listed) = listed_by_the_loader(program) else { continue };
            let held = crate::elf::hold_program(program).expect("hold");
            let found: Vec<PathBuf> =
                closure(program, &held, None).expect("closure").into_iter().map(|f| f.shown).collect();
            for path in &listed {
                assert!(
                    found.contains(path),
                    "{}: the loader lists {} and the search misses it: {found:?}",
                    program.display(),
                    path.display()
                );
            }
            let extra: Vec<&PathBuf> = found.iter().filter(|p| !listed.contains(p) && *p != Path::new(CACHE)).collect();
            assert!(extra.is_empty(), "{}: the search finds {extra:?} the loader does not list", program.display());
            compared += 1;
        }
        assert!(compared > 0, "no program to compare with its loader's listing");
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

    /// However many folders and names a program's headers list, a search looks at [`PROBES_MAX`]
    /// paths at most (the fourteenth outside review: 24 such objects took 73 s).
    #[test]
    fn a_search_looks_at_a_bounded_number_of_paths() {
        let search = Search {
            machine: 62,
            inherited: Vec::new(),
            library_path: Vec::new(),
            main_origin: PathBuf::from("/"),
            cache: None,
            probes: Cell::new(PROBES_MAX),
        };
        let folders = (0..64).map(|i| format!("/nonexistent/{i}")).collect();
        let object = Object { runpath: Some(folders), ..Object::default() };
        for i in 0..1000 {
            assert!(search.find(&format!("lib{i}.so"), &object, Path::new("/")).is_none());
        }
        assert_eq!(search.probes.get(), 0, "every probe used, none more");
    }

    /// A program needing more than [`OBJECTS_MAX`] libraries gets the first of them and the loader's
    /// cache (before, the search returned at the cap and left the cache out, so the loader inside
    /// searched without it).
    #[test]
    fn past_the_most_objects_the_loader_s_cache_is_still_given() {
        if !Path::new(CACHE).exists() {
            eprintln!("SKIP: no {CACHE} on this host");
            return;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let cc = |args: &[&str]| std::process::Command::new("cc").current_dir(dir.path()).args(args).status();
        std::fs::write(dir.path().join("l.c"), "int l(void) { return 0; }\n").expect("write");
        match cc(&["-shared", "-fPIC", "-o", "lib0.so", "l.c"]) {
            Ok(s) => assert!(s.success(), "cc could not build the library"),
            Err(_) => {
                eprintln!("SKIP: no C compiler (cc; Debian: gcc, libc6-dev)");
                return;
            }
        }
        let count = OBJECTS_MAX + 8;
        let mut args = vec!["-o".to_owned(), "p".to_owned(), "p.c".to_owned(), "-L.".to_owned()];
        args.extend(["-Wl,-rpath,$ORIGIN".to_owned(), "-Wl,--no-as-needed".to_owned()]);
        for i in 0..count {
            if i > 0 {
                std::fs::copy(dir.path().join("lib0.so"), dir.path().join(format!("lib{i}.so"))).expect("copy");
            }
            args.push(format!("-l:lib{i}.so"));
        }
        std::fs::write(dir.path().join("p.c"), "int main(void) { return 0; }\n").expect("write");
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        assert!(cc(&args).is_ok_and(|s| s.success()), "cc could not build the program");

        let program = dir.path().join("p");
        let held = crate::elf::hold_program(&program).expect("hold");
        let found: Vec<PathBuf> =
            closure(&program, &held, None).expect("closure").into_iter().map(|f| f.shown).collect();
        let libraries = found.iter().filter(|p| p.starts_with(dir.path())).count();
        assert!(
            libraries > OBJECTS_MAX / 2 && libraries <= OBJECTS_MAX,
            "{libraries} of the program's {count} libraries"
        );
        assert!(found.iter().any(|p| p == Path::new(CACHE)), "the loader's cache is left out: {found:?}");
    }

    #[test]
    fn origin_is_expanded_and_other_variables_are_not_followed() {
        let origin = Path::new("/opt/app/bin");
        assert_eq!(expand("$ORIGIN/../lib", origin), Some(PathBuf::from("/opt/app/lib")));
        assert_eq!(expand("${ORIGIN}", origin), Some(PathBuf::from("/opt/app/bin")));
        assert_eq!(expand("/usr/$LIB", origin), None);
        assert_eq!(expand("lib", origin), None);
    }
}
