//! The guest's initramfs: a static busybox, the kernel modules that reach the host's files (virtio,
//! 9p, overlay) in dependency order, and `/init`. Written as a `newc` cpio archive (the format the
//! kernel unpacks, `Documentation/driver-api/early-userspace/buffer-format.rst`), uncompressed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// The modules the guest needs, by name; their dependencies are added from `modules.dep`.
/// virtio_pci: the bus of every device below; virtio_console: the stdout/stderr ports;
/// 9pnet_virtio + 9p: the host's files; overlay: a writable layer over them; virtio_blk + ext4 (and
/// crc32c_generic, which ext4 asks the crypto API for by name, not by symbol): the guest's `/tmp`, a
/// scratch disk whose file system supports id-mapped mounts, as a host's disk does.
const WANTED: [&str; 8] =
    ["virtio_pci", "virtio_console", "9pnet_virtio", "9p", "overlay", "virtio_blk", "crc32c_generic", "ext4"];

/// A guest kernel and the modules directory that belongs to it.
#[derive(Debug, Clone)]
pub struct Kernel {
    pub image: PathBuf,
    pub version: String,
    pub modules: PathBuf,
}

impl Kernel {
    /// `$SANDBOX_VM_KERNEL` (a `vmlinuz-VERSION`), else the newest `/boot/vmlinuz-*` whose
    /// `/lib/modules/VERSION` exists (Debian's `linux-image-amd64`).
    pub fn find() -> anyhow::Result<Kernel> {
        let from = |image: PathBuf| -> Option<Kernel> {
            let version = image.file_name()?.to_str()?.strip_prefix("vmlinuz-")?.to_owned();
            let modules = Path::new("/lib/modules").join(&version);
            modules.join("modules.dep").is_file().then_some(Kernel { image, version, modules })
        };
        if let Some(image) = std::env::var_os("SANDBOX_VM_KERNEL") {
            let image = PathBuf::from(image);
            return from(image.clone()).with_context(|| {
                format!(
                    "$SANDBOX_VM_KERNEL={}: not a vmlinuz-VERSION with /lib/modules/VERSION/modules.dep",
                    image.display()
                )
            });
        }
        let mut found: Vec<Kernel> = std::fs::read_dir("/boot")
            .map(|d| d.flatten().filter_map(|e| from(e.path())).collect())
            .unwrap_or_default();
        found.sort_by_key(|a| version_key(&a.version));
        found.pop().context(
            "no guest kernel: no /boot/vmlinuz-VERSION with /lib/modules/VERSION; \
             install one (apt-get install linux-image-amd64) or set $SANDBOX_VM_KERNEL",
        )
    }
}

/// "6.1.0-57-amd64" sorts by its numbers: [6, 1, 0, 57].
fn version_key(v: &str) -> Vec<u64> {
    v.split(|c: char| !c.is_ascii_digit()).filter_map(|n| n.parse().ok()).collect()
}

/// The `.ko` files (paths relative to the modules directory) to load for `WANTED`, each after its
/// dependencies. Built-in modules are skipped; compressed ones are refused (busybox `insmod` takes
/// plain `.ko` files).
pub fn module_order(modules_dep: &str, builtin: &str) -> anyhow::Result<Vec<String>> {
    let name = |path: &str| {
        let file = path.rsplit('/').next().unwrap_or(path);
        file.split('.').next().unwrap_or(file).replace('-', "_")
    };
    let mut deps: BTreeMap<String, (String, Vec<String>)> = BTreeMap::new();
    for line in modules_dep.lines() {
        let Some((module, rest)) = line.split_once(':') else { continue };
        deps.insert(name(module), (module.to_owned(), rest.split_whitespace().map(name).collect()));
    }
    let builtin: BTreeSet<String> = builtin.lines().map(name).collect();
    let mut order = Vec::new();
    let mut seen = BTreeSet::new();
    fn visit(
        m: &str,
        deps: &BTreeMap<String, (String, Vec<String>)>,
        builtin: &BTreeSet<String>,
        seen: &mut BTreeSet<String>,
        order: &mut Vec<String>,
    ) -> anyhow::Result<()> {
        if builtin.contains(m) || !seen.insert(m.to_owned()) {
            return Ok(());
        }
        let Some((path, needs)) = deps.get(m) else { bail!("the guest kernel has no module `{m}` (modules.dep)") };
        for dep in needs {
            visit(dep, deps, builtin, seen, order)?;
        }
        if !path.ends_with(".ko") {
            bail!("module `{path}` is compressed; the guest's busybox insmod needs plain .ko files");
        }
        order.push(path.clone());
        Ok(())
    }
    for m in WANTED {
        visit(m, &deps, &builtin, &mut seen, &mut order)?;
    }
    Ok(order)
}

/// The initramfs for `kernel`: busybox, its modules and `init`, as cpio bytes.
pub fn build(kernel: &Kernel, busybox: &[u8], init: &str) -> anyhow::Result<Vec<u8>> {
    let read = |p: &Path| std::fs::read_to_string(p).with_context(|| format!("read {}", p.display()));
    let builtin = read(&kernel.modules.join("modules.builtin")).unwrap_or_default();
    let order = module_order(&read(&kernel.modules.join("modules.dep"))?, &builtin)?;
    let mut cpio = Cpio::default();
    for dir in ["bin", "dev", "proc", "sys", "run", "lower", "upper", "newroot", "lib", "lib/modules"] {
        cpio.dir(dir);
    }
    cpio.node("dev/console", 0o020_600, (5, 1));
    cpio.file("bin/busybox", 0o755, busybox);
    cpio.symlink("bin/sh", "busybox");
    let mut list = String::new();
    for (i, path) in order.iter().enumerate() {
        let bytes = std::fs::read(kernel.modules.join(path)).with_context(|| format!("read module {path}"))?;
        // Numbered, so that `init` loads them in this order with a plain glob.
        let file = format!("{i:02}-{}", path.rsplit('/').next().unwrap_or(path));
        cpio.file(&format!("lib/modules/{file}"), 0o644, &bytes);
        list.push_str(&file);
        list.push('\n');
    }
    cpio.file("lib/modules/order", 0o644, list.as_bytes());
    cpio.file("init", 0o755, init.as_bytes());
    Ok(cpio.finish())
}

/// A `newc` cpio archive being written.
#[derive(Default)]
struct Cpio {
    out: Vec<u8>,
    ino: u32,
}

impl Cpio {
    fn entry(&mut self, name: &str, mode: u32, rdev: (u32, u32), data: &[u8]) {
        self.ino += 1;
        let fields = [self.ino, mode, 0, 0, 1, 0, data.len() as u32, 0, 0, rdev.0, rdev.1, name.len() as u32 + 1, 0];
        self.out.extend_from_slice(b"070701");
        for f in fields {
            self.out.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(0);
        self.pad();
        self.out.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.out.len().is_multiple_of(4) {
            self.out.push(0);
        }
    }

    fn dir(&mut self, name: &str) {
        self.entry(name, 0o040_755, (0, 0), b"");
    }

    fn file(&mut self, name: &str, perm: u32, data: &[u8]) {
        self.entry(name, 0o100_000 | perm, (0, 0), data);
    }

    fn symlink(&mut self, name: &str, target: &str) {
        self.entry(name, 0o120_777, (0, 0), target.as_bytes());
    }

    fn node(&mut self, name: &str, mode: u32, rdev: (u32, u32)) {
        self.entry(name, mode, rdev, b"");
    }

    fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, (0, 0), b"");
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEP: &str = "kernel/fs/overlayfs/overlay.ko:
kernel/fs/9p/9p.ko: kernel/net/9p/9pnet.ko kernel/fs/fscache/fscache.ko kernel/fs/netfs/netfs.ko
kernel/fs/netfs/netfs.ko:
kernel/fs/fscache/fscache.ko: kernel/fs/netfs/netfs.ko
kernel/net/9p/9pnet.ko:
kernel/drivers/virtio/virtio.ko:
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_legacy_dev.ko kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_pci_legacy_dev.ko:
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
kernel/drivers/char/virtio_console.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/net/9p/9pnet_virtio.ko: kernel/net/9p/9pnet.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/crypto/crc32c_generic.ko:
kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko
kernel/lib/crc16.ko:
kernel/fs/mbcache.ko:
kernel/fs/jbd2/jbd2.ko:
";

    #[test]
    fn modules_come_after_their_dependencies_and_builtins_are_skipped() {
        let order = module_order(DEP, "kernel/fs/overlayfs/overlay.ko\n").expect("order");
        let names: Vec<&str> = order.iter().map(|p| p.rsplit('/').next().unwrap_or(p)).collect();
        let at = |n: &str| names.iter().position(|x| *x == n).unwrap_or_else(|| panic!("{n} missing: {names:?}"));
        assert!(at("virtio_ring.ko") < at("virtio_pci.ko") && at("virtio.ko") < at("virtio_pci.ko"));
        assert!(at("netfs.ko") < at("fscache.ko") && at("fscache.ko") < at("9p.ko") && at("9pnet.ko") < at("9p.ko"));
        assert!(at("9pnet.ko") < at("9pnet_virtio.ko") && at("virtio_console.ko") > at("virtio.ko"));
        assert!(
            at("jbd2.ko") < at("ext4.ko") && at("crc16.ko") < at("ext4.ko") && at("virtio.ko") < at("virtio_blk.ko")
        );
        assert!(!names.contains(&"overlay.ko"), "built in");
        assert_eq!(names.len(), 17, "each once: {names:?}");
    }

    #[test]
    fn a_missing_or_compressed_module_is_an_error() {
        let err = module_order("kernel/fs/9p/9p.ko:\n", "").expect_err("no virtio_pci");
        assert!(err.to_string().contains("no module `virtio_pci`"), "{err}");
        let xz = DEP.replace("overlay.ko", "overlay.ko.xz");
        let err = module_order(&xz, "").expect_err("compressed");
        assert!(err.to_string().contains("compressed"), "{err}");
    }

    #[test]
    fn cpio_entries_are_aligned_and_end_with_a_trailer() {
        let mut c = Cpio::default();
        c.file("init", 0o755, b"#!/bin/sh\n");
        c.symlink("bin/sh", "busybox");
        let out = c.finish();
        assert_eq!(&out[..6], b"070701");
        assert_eq!(out.len() % 4, 0);
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains("init\0") && text.contains("#!/bin/sh\n") && text.contains("TRAILER!!!\0"));
        // File size of the first entry: 10 bytes, in the 7th field.
        assert_eq!(&out[6 + 6 * 8..6 + 7 * 8], b"0000000a");
    }
}
