//! MISC_CHECK and ldirectord's external checks: run a command, its exit status decides.

use std::process::Stdio;

use rvs_config::spec::MiscCheck;
use tokio::process::Command;

use crate::{human, Outcome};

/// Run the check's command (no shell unless the spec says so), killed after its timeout.
/// Exit 0: passed; with `misc_dynamic`, 2–255: passed with weight status − 2; anything
/// else fails ([`Outcome::from_misc_exit`]).
pub async fn run(m: &MiscCheck) -> Outcome {
    let c = &m.command;
    let Some(prog) = c.argv.first() else {
        return Outcome::Fail("empty command".into());
    };
    let mut cmd = match crate::users::command(c) {
        Ok(cmd) => Command::from(cmd),
        Err(e) => return Outcome::Fail(e),
    };
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(ch) => ch,
        Err(e) => return Outcome::Fail(format!("cannot run {prog}: {e}")),
    };
    let status = match tokio::time::timeout(m.timeout, child.wait()).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Outcome::Fail(format!("{prog}: {e}")),
        Err(_) => {
            let _ = child.kill().await;
            return Outcome::Fail(format!("{prog} did not finish within {}", human(m.timeout)));
        }
    };
    match status.code().and_then(|c| u8::try_from(c).ok()) {
        Some(code) => match Outcome::from_misc_exit(code, m.dynamic) {
            Outcome::Fail(_) => Outcome::Fail(format!("{prog} exited with {code}")),
            passed => passed,
        },
        None => Outcome::Fail(format!("{prog} killed by a signal")),
    }
}
