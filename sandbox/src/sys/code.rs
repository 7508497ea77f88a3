//! Naming a function of this binary across processes: a closure to run in a sandbox is sent as the
//! offset of its entry function from [`anchor`], a function of this crate, and taken back only by a
//! process whose binary has the same build id. The same binary puts every function at the same
//! offset from any other, wherever ASLR loaded it; a different binary (a rebuild under the same path)
//! is refused, never guessed at.

use std::io::Read;
use std::os::unix::fs::FileExt;
use std::sync::OnceLock;

/// The signature of a closure's entry: its input as JSON in, its value as JSON out (or why not).
pub(crate) type ClosureEntry = fn(&[u8]) -> Result<Vec<u8>, String>;

/// The fixed point that offsets are taken from.
#[inline(never)]
fn anchor() {}

/// Where `entry` is, as an offset that means the same in every process running this binary.
pub(crate) fn offset_of(entry: ClosureEntry) -> usize {
    (entry as usize).wrapping_sub(anchor as fn() as usize)
}

/// The entry at `offset`, if `build` is this binary's build id (see [`offset_of`]).
pub(crate) fn entry_at(offset: usize, build: &str) -> Option<ClosureEntry> {
    if build != build_id() {
        return None;
    }
    let address = (anchor as fn() as usize).wrapping_add(offset);
    // SAFETY: `offset` came from `offset_of` of a `ClosureEntry` in a process running a binary with
    // this build id, i.e. this very binary: the same code lies at the same distance from `anchor`
    // here, so `address` is that function, with that signature.
    Some(unsafe { std::mem::transmute::<usize, ClosureEntry>(address) })
}

/// The value of the closure type `F`, which is zero-sized: a closure that captures nothing (or only
/// zero-sized values). Its caller in another process forgot its own value of `F` (`mem::forget`), so
/// the one made here is that value, moved: there is still exactly one.
pub(crate) fn conjure<F>() -> F {
    const { assert!(std::mem::size_of::<F>() == 0, "only a closure that captures nothing can be sent") };
    // SAFETY: `F` has no bytes (asserted at compile time), so no bit pattern can be invalid; the
    // value it stands for was given up by its owner (forgotten, never dropped), so making it here
    // duplicates nothing: it is a move between processes.
    unsafe { std::mem::zeroed() }
}

/// This binary's GNU build id (the `.note.gnu.build-id` the linker writes), read from
/// `/proc/self/exe`; without one, the file's device, inode, size and modification time.
pub(crate) fn build_id() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| {
        let file = std::fs::File::open("/proc/self/exe");
        let id = file.as_ref().ok().and_then(gnu_build_id);
        id.map(|bytes| bytes.iter().map(|b| format!("{b:02x}")).collect()).unwrap_or_else(|| {
            use std::os::unix::fs::MetadataExt;
            file.and_then(|f| f.metadata())
                .map(|m| format!("file:{}:{}:{}:{}", m.dev(), m.ino(), m.size(), m.mtime_nsec()))
                .unwrap_or_default()
        })
    })
}

/// Reads the build id from an ELF64 little-endian file's `PT_NOTE` segments.
fn gnu_build_id(file: &std::fs::File) -> Option<Vec<u8>> {
    let mut header = [0u8; 64];
    (&*file).read_exact(&mut header).ok()?;
    if &header[..4] != b"\x7fELF" || header[4] != 2 || header[5] != 1 {
        return None;
    }
    let u16_at = |b: &[u8], at: usize| u16::from_le_bytes([b[at], b[at + 1]]) as u64;
    let u32_at = |b: &[u8], at: usize| u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]) as u64;
    let u64_at = |b: &[u8], at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap_or_default());
    let (phoff, phentsize, phnum) = (u64_at(&header, 32), u16_at(&header, 54), u16_at(&header, 56));
    let mut phdrs = vec![0u8; (phentsize * phnum) as usize];
    file.read_exact_at(&mut phdrs, phoff).ok()?;
    for ph in phdrs.chunks_exact(phentsize as usize) {
        const PT_NOTE: u64 = 4;
        if u32_at(ph, 0) != PT_NOTE {
            continue;
        }
        let (offset, size) = (u64_at(ph, 8), u64_at(ph, 32).min(1 << 16));
        let mut notes = vec![0u8; size as usize];
        file.read_exact_at(&mut notes, offset).ok()?;
        let mut at = 0usize;
        while at + 12 <= notes.len() {
            let (namesz, descsz, kind) =
                (u32_at(&notes, at) as usize, u32_at(&notes, at + 4) as usize, u32_at(&notes, at + 8));
            let name_at = at + 12;
            let desc_at = name_at + namesz.next_multiple_of(4);
            let end = desc_at + descsz.next_multiple_of(4);
            const NT_GNU_BUILD_ID: u64 = 3;
            if end > notes.len() + 3 {
                break;
            }
            if kind == NT_GNU_BUILD_ID && notes.get(name_at..name_at + namesz) == Some(b"GNU\0") {
                return notes.get(desc_at..desc_at + descsz).map(<[u8]>::to_vec);
            }
            at = end;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn double(input: &[u8]) -> Result<Vec<u8>, String> {
        Ok(input.iter().map(|b| b * 2).collect())
    }

    #[test]
    fn an_entry_comes_back_from_its_offset_in_the_same_build_only() {
        let offset = offset_of(double);
        let entry = entry_at(offset, build_id()).expect("same build");
        assert_eq!(entry(&[1, 2]), Ok(vec![2, 4]));
        assert!(entry_at(offset, "another build").is_none());
    }

    #[test]
    fn the_build_id_is_the_linkers() {
        let id = build_id();
        assert!(id.len() >= 16 && id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
    }
}
