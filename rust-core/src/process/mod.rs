//! Starting, watching, restarting and stopping backend processes.

mod backend;
mod child;
pub mod cmdline;
mod health;
pub mod launch;
mod memory;
mod output;
pub mod port;
mod shutdown;
mod slot;
mod spawn;
mod start;
mod stdout_log;
mod token;
pub mod user_token;

pub use backend::{Backend, InFlight, Session};
pub use child::{Child, ExitInfo, OutputSink};
pub use health::probe;
pub use memory::resident_bytes;
pub use output::CAPTURE_LIMIT_CHARS;
pub use shutdown::{control_client, stop, Stopped};
pub use slot::{Slot, StartResult};
pub use start::{start, start_in, ExitHook, StartFailure};
pub use token::Token;
pub use user_token::{forwards_token_of, RemoteToken, UserToken};
