//! Errors of the control operations, one variant per (errno, operation) pair that ipvsadm
//! distinguishes (`libipvs.c: ipvs_strerror`). `Display` gives ipvsadm's exact text.

use thiserror::Error;

/// Why a control operation on the IPVS state was refused. Nothing is changed when one is returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum IpvsError {
    /// EEXIST on add-service
    #[error("Service already exists")]
    ServiceExists,
    /// ENOENT on add/edit-service: unknown scheduler or persistence engine
    #[error("Scheduler or persistence engine not found")]
    SchedulerNotFound,
    /// ESRCH on edit/delete/zero/get service
    #[error("No such service")]
    NoSuchService,
    /// ESRCH on add/edit/delete destination
    #[error("Service not defined")]
    ServiceNotDefined,
    /// EEXIST on add destination
    #[error("Destination already exists")]
    DestExists,
    /// ENOENT on edit/delete destination
    #[error("No such destination")]
    NoSuchDest,
    /// EINVAL
    #[error("Invalid operation.  Possibly wrong module version, address not unicast, ...")]
    Invalid,
    /// ERANGE: negative weight, lower threshold above upper
    #[error("Numerical result out of range")]
    Range,
    /// EFAULT: protocol other than TCP/UDP/SCTP
    #[error("Bad address")]
    BadProtocol,
    /// ENOMEM
    #[error("Memory allocation problem")]
    NoMemory,
    /// EEXIST on start-daemon
    #[error("Daemon has already run")]
    DaemonRunning,
    /// ESRCH on stop-daemon
    #[error("No daemon is running")]
    NoDaemon,
}

impl IpvsError {
    /// The Linux errno the kernel would return.
    pub fn errno(self) -> i32 {
        match self {
            IpvsError::ServiceExists | IpvsError::DestExists | IpvsError::DaemonRunning => 17,
            IpvsError::SchedulerNotFound | IpvsError::NoSuchDest => 2,
            IpvsError::NoSuchService | IpvsError::ServiceNotDefined | IpvsError::NoDaemon => 3,
            IpvsError::Invalid => 22,
            IpvsError::Range => 34,
            IpvsError::BadProtocol => 14,
            IpvsError::NoMemory => 12,
        }
    }
}
