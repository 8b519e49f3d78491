//! Running commands as a user (keepalived's MISC_CHECK `user USER [GROUP]`, `script_user`):
//! names are looked up in `/etc/passwd` and `/etc/group` (numeric ids are taken as they are).

use std::os::unix::process::CommandExt;

/// The uid and gid of `user` (and `group`, else the user's primary group), read from the
/// files `passwd` and `group` (their text).
pub fn lookup(
    passwd: &str,
    groups: &str,
    user: &str,
    group: Option<&str>,
) -> Result<(u32, u32), String> {
    let entry = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() >= 4 && (f[0] == user || f[2] == user));
    let (uid, primary) = match (entry, user.parse::<u32>()) {
        (Some(f), _) => (
            f[2].parse().map_err(|_| format!("user {user}: bad uid"))?,
            f[3].parse().map_err(|_| format!("user {user}: bad gid"))?,
        ),
        (None, Ok(n)) => (n, n),
        (None, Err(_)) => return Err(format!("no such user: {user}")),
    };
    let gid = match group {
        None => primary,
        Some(g) => match groups
            .lines()
            .map(|l| l.split(':').collect::<Vec<_>>())
            .find(|f| f.len() >= 3 && (f[0] == g || f[2] == g))
        {
            Some(f) => f[2].parse().map_err(|_| format!("group {g}: bad gid"))?,
            None => g.parse().map_err(|_| format!("no such group: {g}"))?,
        },
    };
    Ok((uid, gid))
}

/// The process a configured command stands for: its words run directly, or the joined
/// words through `/bin/sh -c` when the spec says so, as its user and group; stdin empty.
pub fn command(c: &rvs_config::spec::Command) -> Result<std::process::Command, String> {
    let prog = c.argv.first().ok_or("empty command")?;
    let mut cmd = if c.shell {
        let mut x = std::process::Command::new("/bin/sh");
        x.arg("-c").arg(c.argv.join(" "));
        x
    } else {
        let mut x = std::process::Command::new(prog);
        x.args(&c.argv[1..]);
        x
    };
    cmd.stdin(std::process::Stdio::null());
    run_as(&mut cmd, c.user.as_deref(), c.group.as_deref())?;
    Ok(cmd)
}

/// Make `cmd` run as `user`/`group` when one is given (looked up in the system's files).
pub fn run_as(
    cmd: &mut std::process::Command,
    user: Option<&str>,
    group: Option<&str>,
) -> Result<(), String> {
    let Some(user) = user else { return Ok(()) };
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let groups = std::fs::read_to_string("/etc/group").unwrap_or_default();
    let (uid, gid) = lookup(&passwd, &groups, user, group)?;
    cmd.uid(uid).gid(gid);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\nsvc:x:1001:1002::/home/svc:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nnogroup:x:65534:\nchecks:x:1500:svc\n";

    #[test]
    fn users_and_groups_by_name_or_number() {
        assert_eq!(lookup(PASSWD, GROUP, "nobody", None), Ok((65534, 65534)));
        assert_eq!(lookup(PASSWD, GROUP, "svc", None), Ok((1001, 1002)));
        assert_eq!(
            lookup(PASSWD, GROUP, "svc", Some("checks")),
            Ok((1001, 1500))
        );
        assert_eq!(
            lookup(PASSWD, GROUP, "4000", Some("4001")),
            Ok((4000, 4001))
        );
        assert_eq!(
            lookup(PASSWD, GROUP, "ghost", None),
            Err("no such user: ghost".into())
        );
        assert_eq!(
            lookup(PASSWD, GROUP, "svc", Some("ghosts")),
            Err("no such group: ghosts".into())
        );
    }
}
