//! `--state FILE`: the rules in the `-S -n --extended` format (ipvsadm's, plus rvs's extension
//! options such as `--proxy-protocol`), written atomically after every accepted
//! change (temporary file in the same directory, `fsync`, `rename`, `fsync` of the directory)
//! and read back at start line by line through ipvsadm's `-R` parser.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{bail, Context, Result};
use rvs_api::names::SystemNames;
use rvs_config::ipvsadm::{parse_restore_line, restore_lines};

use crate::director::Director;

/// Replace `path` with `text` so that a crash leaves either the old or the new content.
pub fn write_atomic(path: &Path, text: &str) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path.file_name().context("state file has no name")?;
    let tmp = dir.join(format!(
        ".{}.{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id(),
        TMP_SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    // create_new (O_CREAT|O_EXCL) never follows a symlink planted at the temporary name, and
    // the rules are private whatever the umask
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    let written = f
        .write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .and_then(|()| fs::rename(&tmp, path));
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("writing {}", path.display()));
    }
    File::open(dir)?.sync_all()?;
    Ok(())
}

/// Makes every temporary name of this process unique.
static TMP_SEQ: AtomicU64 = AtomicU64::new(0);

/// Apply the saved rules of `path` (absent: nothing to restore). A line the parser refuses
/// stops the start (the file is not what rvsd writes); a line the state refuses is logged and
/// the rest applied, as `ipvsadm -R` does. Returns how many lines were applied.
pub fn restore(path: &Path, director: &mut Director) -> Result<usize> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let names = SystemNames::load();
    let mut applied = 0;
    for (n, words) in restore_lines(&text).iter().enumerate() {
        let cmd = match parse_restore_line("rvsd", words, &names) {
            Ok(cmd) => cmd,
            Err(exit) => bail!(
                "{} line {}: {}",
                path.display(),
                n + 1,
                exit.stderr.trim_end()
            ),
        };
        let out = director.run(&cmd, &names);
        if out.exit.status == 0 {
            applied += 1;
        } else {
            tracing::warn!(line = n + 1, "state file: {}", out.exit.stderr.trim_end());
        }
    }
    Ok(applied)
}
