//! The configuration files rvsd runs (`--config`, `--keepalived`, `--ldirectord`), read and
//! merged into one [`Config`]; read again on SIGHUP or `rvsadm --reload`.

use std::path::PathBuf;

use rvs_config::spec::{Config, ConfigError, Files};

use crate::files::FsFiles;

/// Where the configuration comes from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sources {
    /// rvs TOML
    pub config: Option<PathBuf>,
    /// keepalived.conf
    pub keepalived: Option<PathBuf>,
    /// ldirectord.cf
    pub ldirectord: Option<PathBuf>,
}

type Reader = fn(&str, &dyn Files) -> Result<Config, ConfigError>;

impl Sources {
    /// The files, as named on the command line.
    pub fn names(&self) -> Vec<String> {
        [&self.config, &self.keepalived, &self.ldirectord]
            .into_iter()
            .flatten()
            .map(|p| p.display().to_string())
            .collect()
    }

    /// Read every file and merge them (a service declared by two of them is refused);
    /// `None` when there are none. The error is the first file's located message.
    pub fn load(&self) -> Result<Option<Config>, String> {
        let readers: [(&Option<PathBuf>, Reader); 3] = [
            (&self.config, rvs_config::rvsconf::read),
            (&self.keepalived, rvs_config::keepalived::read),
            (&self.ldirectord, rvs_config::ldirectord::read),
        ];
        let mut merged: Option<Config> = None;
        for (path, read) in readers {
            let Some(path) = path else { continue };
            let cfg = read(&path.to_string_lossy(), &FsFiles).map_err(|e| e.to_string())?;
            merge(merged.get_or_insert_with(Config::default), cfg)?;
        }
        Ok(merged)
    }
}

fn merge(into: &mut Config, cfg: Config) -> Result<(), String> {
    for svc in &cfg.services {
        for key in &svc.keys {
            if let Some(first) = into.services.iter().find(|s| s.keys.contains(key)) {
                return Err(format!(
                    "{}: service {key} is also declared at {}",
                    svc.loc, first.loc
                ));
            }
        }
    }
    into.services.extend(cfg.services);
    into.notices.extend(cfg.notices);
    let (s, t) = (&mut into.settings, cfg.settings);
    s.workers = s.workers.or(t.workers);
    s.drain_timeout = s.drain_timeout.or(t.drain_timeout);
    s.connect_timeout = s.connect_timeout.or(t.connect_timeout);
    s.timeouts = s.timeouts.or(t.timeouts);
    s.drain_grace = s.drain_grace.or(t.drain_grace);
    Ok(())
}
