//! [`FsFiles`]: the real file system behind rvs-config's [`Files`] trait (the readers do no
//! I/O themselves).

use std::path::Path;

use rvs_config::spec::{glob_match, Files};

/// Files read with `std::fs`; globs match the last path component within its directory.
#[derive(Clone, Copy, Debug, Default)]
pub struct FsFiles;

impl Files for FsFiles {
    fn read(&self, path: &str) -> Result<String, String> {
        std::fs::read_to_string(path).map_err(|e| io_text(&e))
    }

    fn glob(&self, pattern: &str) -> Vec<String> {
        let (dir, _) = match pattern.rsplit_once('/') {
            Some(("", name)) => ("/", name),
            Some((dir, name)) => (dir, name),
            None => (".", pattern),
        };
        let Ok(entries) = std::fs::read_dir(Path::new(dir)) else {
            return Vec::new();
        };
        let mut found: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let full = match pattern.rsplit_once('/') {
                    Some(_) if dir == "/" => format!("/{name}"),
                    Some(_) => format!("{dir}/{name}"),
                    None => name,
                };
                glob_match(pattern.as_bytes(), full.as_bytes()).then_some(full)
            })
            .collect();
        found.sort();
        found
    }
}

/// An I/O error as the C library words it ("No such file or directory"), without Rust's
/// "(os error N)" suffix.
fn io_text(e: &std::io::Error) -> String {
    let text = e.to_string();
    match text.rfind(" (os error ") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_globs_a_directory() {
        let dir = std::env::temp_dir().join(format!("rvsd-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for name in ["b.conf", "a.conf", "c.txt"] {
            std::fs::write(dir.join(name), name).unwrap();
        }
        let d = dir.display().to_string();
        let got = FsFiles.glob(&format!("{d}/*.conf"));
        assert_eq!(got, vec![format!("{d}/a.conf"), format!("{d}/b.conf")]);
        assert_eq!(FsFiles.read(&format!("{d}/c.txt")).unwrap(), "c.txt");
        assert_eq!(
            FsFiles.read(&format!("{d}/none")).unwrap_err(),
            "No such file or directory"
        );
        assert!(FsFiles.glob(&format!("{d}/none/*")).is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
