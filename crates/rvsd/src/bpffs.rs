//! The BPF file system that pins live on: which mount holds a path (from
//! `/proc/self/mountinfo`), and mounting bpffs at `/sys/fs/bpf` when nothing is mounted
//! there, as systemd does at boot on most distributions.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Where bpffs is mounted by convention.
pub const DEFAULT_MOUNT: &str = "/sys/fs/bpf";

/// The mount point and file system type of the mount that holds `path` (the longest mount
/// point that is a prefix of it), from a mountinfo text.
pub fn mount_of(mountinfo: &str, path: &Path) -> Option<(PathBuf, String)> {
    let mut best: Option<(PathBuf, String)> = None;
    for line in mountinfo.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(sep) = fields.iter().position(|f| *f == "-") else {
            continue;
        };
        let (Some(point), Some(fstype)) = (fields.get(4), fields.get(sep + 1)) else {
            continue;
        };
        let point = PathBuf::from(unescape(point));
        let longer = best
            .as_ref()
            .is_none_or(|(b, _)| point.as_os_str().len() >= b.as_os_str().len());
        if path.starts_with(&point) && longer {
            best = Some((point, fstype.to_string()));
        }
    }
    best
}

/// mountinfo's octal escapes (`\040` for a space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let oct = b.get(i + 1..i + 4).and_then(|d| {
            std::str::from_utf8(d)
                .ok()
                .and_then(|d| u8::from_str_radix(d, 8).ok())
        });
        match (b[i], oct) {
            (b'\\', Some(c)) => {
                out.push(c);
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Makes sure `dir` can hold pins: it must be on a bpffs; when it is under
/// [`DEFAULT_MOUNT`] and nothing is mounted there, bpffs is mounted there. True: mounted now.
pub fn ensure(dir: &Path) -> io::Result<bool> {
    let info = std::fs::read_to_string("/proc/self/mountinfo")?;
    match mount_of(&info, dir) {
        Some((_, fstype)) if fstype == "bpf" => return Ok(false),
        Some((point, _)) if dir.starts_with(DEFAULT_MOUNT) && point != Path::new(DEFAULT_MOUNT) => {
        }
        _ => {
            return Err(io::Error::other(format!(
                "{} is not on a BPF file system (mount one: mount -t bpf bpf DIR)",
                dir.display()
            )))
        }
    }
    mount(Path::new(DEFAULT_MOUNT))?;
    Ok(true)
}

/// `mount -t bpf bpf DIR`.
fn mount(dir: &Path) -> io::Result<()> {
    let target = CString::new(dir.as_os_str().as_bytes())?;
    let bpf = c"bpf";
    // SAFETY: every pointer is a NUL-terminated string that lives for the whole call (the
    // CString and two string literals); the data argument may be null.
    let rc = unsafe {
        libc::mount(
            bpf.as_ptr(),
            target.as_ptr(),
            bpf.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!("mounting bpffs on {}: {e}", dir.display()),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO: &str = "\
22 1 0:21 / / rw,relatime shared:1 - ext4 /dev/vda1 rw
23 22 0:22 / /sys rw,nosuid shared:2 - sysfs sysfs rw
30 23 0:27 / /sys/fs/bpf rw,nosuid shared:9 - bpf bpf rw,mode=700
31 22 0:28 / /tmp/my\\040dir rw - bpf bpf rw
";

    #[test]
    fn the_longest_mount_point_holds_a_path() {
        let m = |p: &str| mount_of(INFO, Path::new(p)).unwrap();
        assert_eq!(m("/sys/fs/bpf/rvs"), ("/sys/fs/bpf".into(), "bpf".into()));
        assert_eq!(m("/sys/fs/bpfx"), ("/sys".into(), "sysfs".into()));
        assert_eq!(m("/run/rvs"), ("/".into(), "ext4".into()));
        assert_eq!(m("/tmp/my dir/rvs"), ("/tmp/my dir".into(), "bpf".into()));
        let without_bpf: String = INFO.lines().take(2).map(|l| format!("{l}\n")).collect();
        let (point, fstype) = mount_of(&without_bpf, Path::new("/sys/fs/bpf/rvs")).unwrap();
        assert_eq!(
            (point.to_str().unwrap(), fstype.as_str()),
            ("/sys", "sysfs")
        );
    }
}
