//! # promote-opendal: any Apache OpenDAL service as a promote backend
//!
//! `kind = "opendal"` opens the OpenDAL service named by `scheme` with the options in
//! `[backend.options]`, passed to OpenDAL as they are. Services are compiled in as cargo
//! features (`services-memory`, `services-fs`, `services-s3`, `services-azblob`, and
//! `services-gcs`); `backend.scheme` naming one that is not compiled in is a configuration
//! error that lists those that are.
//!
//! ```toml
//! [backend]
//! kind = "opendal"
//! scheme = "s3"
//! [backend.options]
//! bucket = "artifacts"
//! region = "us-east-1"
//! [backend.layers]
//! retry_max_times = 4
//! timeout = "60s"
//! concurrent_limit = 16
//! ```
//!
//! # Atomicity
//!
//! - **Create-only only where it is real.** A service is offered create-only only when it is
//!   on the allowlist in `services` ([`services::ATOMIC`]: S3, Azure Blob, GCS, memory), each
//!   entry with the reason its conditional write is decided by the storage. A declared
//!   `write_with_if_not_exists` is not enough: OpenDAL's `fs` checks for the file and then
//!   renames over it, which races. Elsewhere the capability is missing and core refuses
//!   create-only naming the service and what to use instead (`kind = "local"` for a
//!   filesystem, `--replace` to opt out).
//! - **Nothing partial is visible.** Small objects are held in memory and written in one
//!   request; large ones (over `multipart_threshold`) are staged in a local file, verified by
//!   core, and only then sent as one multi-part write whose commit carries the condition
//!   (`If-None-Match: *` for create-only, `If-Match: <etag>` for compare-and-swap). A complete
//!   file the caller wrote and hashed (a download run's partial) on the staging area's
//!   filesystem is moved into it as the staging file instead of copied (`Backend::adopt`).
//! - **One committer per key.** Where the allowlist says so (S3: LocalStack checks a
//!   multipart completion's condition before assembling, so racing completions can all win;
//!   Azure: block-list commits not proven atomic on the emulator), a multi-part commit holds the
//!   key's claim ([`promote_core::kit::claims`], control objects under `.promote/claims/`), fenced
//!   right before the commit. The claims are the same objects, same names, as the S3 backend's.
//! - **Digests** go with the object as user metadata (`promotesha256`) where the service
//!   allows it; elsewhere `head` reports none and core hashes the object when it must decide.
//! - **Retries** come from OpenDAL's retry layer, each attempt under the timeout layer. A
//!   create-only write whose retry finds "already exists" (perhaps its own first attempt) is
//!   resolved by core comparing digests. A multi-part commit whose answer was lost, and whose
//!   retry finds the upload gone or its condition unmet, is a success when the key holds the
//!   verified bytes (the digest stored with the object, and its size).
//! - **Leftovers**: a dropped or aborted write removes its staging file; `recover` removes
//!   those of dead writers (same host, at once) or idle ones (by age), and stale claims.
//!   Unfinished uploads on the service (a writer killed during its final upload) are not
//!   listed by OpenDAL: S3 ones are aborted by `kind = "s3"`'s `recover` or a bucket lifecycle
//!   rule; Azure drops uncommitted blocks on its own after a week.

mod backend;
mod clock;
mod config;
mod control;
mod errors;
mod probe;
pub mod services;
mod staged;
mod staging;

pub use backend::{OpendalBackend, compiled_services};
pub use config::{LayersConfig, OpendalConfig};

/// Registers `kind = "opendal"`.
pub fn register(registry: &mut promote_settings::Registry) {
    registry.register("opendal", promote_settings::registry::load::<OpendalConfig>);
}
