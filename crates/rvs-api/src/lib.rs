//! # rvs-api: what `rvsd` and `rvsadm` share
//!
//! - [`proto`]: the control protocol, version [`proto::VERSION`]: one JSON [`proto::Request`]
//!   per connection on the Unix socket, answered by one JSON [`proto::Response`] (see
//!   `docs/control-api.md`). [`proto::call`] is the client side.
//! - [`names`]: [`names::SystemNames`], the host and service lookups ipvsadm makes through the C
//!   library (`/etc/hosts`, `/etc/services`), as a `Resolve` for parsing and a `Names` for
//!   listings without `-n`.
//!
//! ```no_run
//! use rvs_api::proto::{call, Request};
//! let answer = call("/run/rvs/rvsd.sock".as_ref(), &Request::ipvsadm("rvsadm", &["-Ln"]))?;
//! print!("{}", answer.stdout);
//! # Ok::<(), std::io::Error>(())
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod names;
pub mod proto;
