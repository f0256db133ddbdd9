//! # promote-object-store: atomic promotion on S3 and friends
//!
//! Objects in an S3 bucket (AWS, or any S3-compatible server: MinIO-class, Garage, Ceph RGW,
//! LocalStack) under an optional key prefix, through the `object_store` crate; and an in-memory
//! store for tests (`kind = "memory"`).
//!
//! # Atomicity
//!
//! - **Nothing partial is ever visible**: an object up to `multipart_threshold` is buffered and
//!   sent in one PUT; a larger one is a multipart upload, invisible until completed.
//! - **Create-only, for every size**: a single PUT carries `If-None-Match: *`; a multipart
//!   upload's CompleteMultipartUpload carries `If-None-Match: *` too (object_store cannot, so an
//!   HTTP layer adds it for the uploads promote registers). The server decides atomically; there
//!   is never a HEAD-then-PUT. Cost: nothing extra — no copy, no second write.
//! - **Compare-and-swap**: `If-Match: <etag>` the same way; `Replace` is a plain PUT.
//! - **Refused, not weakened**: with `conditional_writes = "probe"` (default) the backend checks,
//!   before the first create-only publish of the process (`Backend::ready_for`) and in `doctor`,
//!   that the server refuses a second create-only PUT and multipart completion; a server that
//!   does not gets create-only refused, with the reason, before any byte moves, until you opt in
//!   to overwrites (`--replace`) or set `conditional_writes = "trust"`. Opening the backend and
//!   reading (`head`, `read`, `list`, a dry-run sweep) never write, so read-only credentials work.
//! - **Paths**: keys, prefixes, markers and claims are object paths verbatim (`verbatim`), never
//!   percent-encoded; the configured prefix follows the key rules.
//! - **Any size**: part sizes keep an upload under S3's 10,000 parts (see `parts`); objects over
//!   `max_object_size` are refused up front when their size is known.
//! - **Digests**: `x-amz-checksum-sha256` on every PUT and part (`checksum = true`, the
//!   default; servers that verify it reject corrupted bodies); the object's SHA-256 in
//!   `x-amz-meta-promote-sha256`, so `head` and reruns need not read data. A multipart upload's
//!   metadata is fixed when it starts, so it carries the digest only when the caller gave it up
//!   front (`--sha256`); otherwise the digest is recorded after completion in a sidecar under
//!   `<prefix>/.promote/digests/`, which `head` trusts only while the object's ETag is the one it
//!   names (see `digests`).
//! - **Retries**: transient faults are retried with backoff by object_store, decided from the
//!   HTTP status and S3 error code (see `faults`), never from message text; a plain 4xx is final,
//!   and so is a 501 Not Implemented. A create-only write whose retry meets "already exists"
//!   (perhaps our own first attempt) is resolved by core comparing digests: identical is
//!   success, different is a conflict. A multipart completion whose answer was lost, and whose
//!   retry meets "no such upload" or a failed condition, is a success when the key holds exactly
//!   its parts, by their ETag (see `completion`).
//! - **One completer per key**: a conditional multipart completion holds the key's claim
//!   ([`promote_core::kit::claims`], stored as control objects under `<prefix>/.promote/claims/`),
//!   renewed while it completes and fenced right before the completion, so servers whose
//!   conditional completion is not atomic still see one completer at a time (see `claims` and
//!   `control`).
//! - **No leftovers**: failed, aborted and dropped uploads are aborted, and their claims
//!   released. Each upload has a marker under `<prefix>/.promote/staging/` naming its writer
//!   (host, boot, pid namespace, pid, start time); `sweep_staging` lists in-progress uploads
//!   under the prefix and aborts those whose writer is gone (same machine) or that have been
//!   idle (since their newest part, on the server's clock) for the cut-off; one rule decides dry
//!   and real runs.
//! - Memory: at most `part_size × upload_concurrency` bytes in flight per object (default 32 MiB).

mod backend;
mod claims;
mod completion;
mod conditional;
mod config;
mod control;
mod digests;
mod errors;
mod faults;
mod liveness;
mod missing;
mod names;
mod parts;
mod probe;
mod profile;
mod resume;
mod staged;
mod uploads;

pub use backend::ObjectStoreBackend;
pub use config::{ConditionalWrites, MemoryConfig, S3Config};

/// Registers `kind = "s3"` and `kind = "memory"`.
pub fn register(registry: &mut promote_settings::Registry) {
    registry.register("s3", promote_settings::registry::load::<S3Config>);
    registry.register("memory", promote_settings::registry::load::<MemoryConfig>);
    registry.describe("s3", || schemars::schema_for!(S3Config).to_value());
    registry.describe("memory", || schemars::schema_for!(MemoryConfig).to_value());
}
