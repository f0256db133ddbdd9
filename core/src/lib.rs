//! # promote-core: the atomic-promotion contract
//!
//! Land bytes in storage **all or nothing**. Bytes from any source are staged out of sight,
//! hashed with SHA-256 and counted on the way, checked against what the caller expects, and only
//! then published atomically at their final key — create-only by default. This crate is the
//! contract every backend implements and the one place where verification happens.
//!
//! The pieces:
//! - [`Key`]: a validated, root-relative object name that cannot escape the storage root.
//! - [`Backend`] and [`StagedWrite`]: what a storage plugin implements (stage, write, publish,
//!   abort, head, read, delete, list, sweep).
//! - [`Store`]: a backend wrapped with core's checks; [`Store::stage`] gives a [`Staged`]
//!   handle, [`Store::promote_reader`] / [`Store::promote_stream`] run the whole
//!   stage → stream → verify → promote sequence, [`Store::promote_file`] lets the backend copy a
//!   large local file itself first ([`Backend::stage_copy`]: inside the kernel on local disk),
//!   [`Store::promote_spooled`] does it through a local spool file.
//! - [`Expected`], [`Mode`], [`Outcome`], [`Receipt`], [`Error`]: what goes in and comes out.
//! - [`Registry`]: backends by kind, configured from a `backend` table.
//! - [`Claims`] over a backend's [`ControlStore`]: leases on names shared through the storage
//!   alone (serialized completions, shards of a `promote run`), judged by the server's clock;
//!   [`Owner`]: which process holds something, and whether it is still alive.
//!
//! # Atomicity
//!
//! Each promise is checked, under the same name, by the conformance suite every backend runs:
//! - `round_trip`, `empty_object`, `large_object_many_chunks`, `special_keys_round_trip`: what
//!   was promoted reads back byte for byte, at any size, under any valid key.
//! - `size_mismatch_publishes_nothing`, `digest_mismatch_publishes_nothing`: bytes that are not
//!   what the caller expected are never published, and their staging data is removed.
//! - `file_promotion_verifies`: a file promoted with [`Store::promote_file`] is verified the
//!   same way whether it was streamed or copied by the backend itself ([`Backend::stage_copy`]).
//! - `abort_leaves_no_residue`, `drop_leaves_no_residue`, `listing_never_shows_staging`: staged
//!   bytes are invisible until promoted, and gone after an abort or a drop.
//! - `create_on_taken_key_conflicts`: [`Mode::Create`] never replaces an object; different bytes
//!   at the key give [`Error::Conflict`] and leave the old bytes intact.
//! - `create_identical_is_already_present`: identical bytes give [`Outcome::AlreadyPresent`], so
//!   reruns are idempotent.
//! - `concurrent_creates_one_winner`: of concurrent create-only promotions on one key exactly one
//!   wins; the storage decides (no-replace rename, `If-None-Match: *`), never check-then-act.
//! - `replace_overwrites`, `replace_if_version_swaps`: the other modes, where
//!   [`Capabilities`] offer them; a mode a backend lacks is refused before any byte moves.
//! - `invalid_keys_rejected_before_io`: a bad key is an error before anything is staged.
//! - `sweep_removes_stale_staging_only`: leftovers of crashed writers are found and removed;
//!   a live writer's are not.
//!
//! What atomicity does not cover: durability across power loss is the backend's (the local
//! backend fsyncs data, publishes, then fsyncs the directory, unless told `durability = "none"`).
//! A backend may instead batch it ([`GroupCommit`]): concurrent promotions share one flush of
//! their staged data before any is published and one flush of the published names before any
//! receipt is returned.
//!
//! # Errors
//!
//! Every fallible call returns [`Error`], whose variants say what happened rather than where:
//! [`Error::Conflict`], [`Error::DigestMismatch`], [`Error::NotFound`], … and
//! [`Error::is_retryable`] for transient faults.
//!
//! # Examples
//!
//! ```no_run
//! # async fn demo(store: promote_core::Store) -> Result<(), promote_core::Error> {
//! use promote_core::{Expected, Key, Mode};
//! let file = tokio::fs::File::open("paper.pdf").await.map_err(|e| promote_core::Error::io("open", e))?;
//! let outcome = store
//!     .promote_reader(&Key::new("papers/paper.pdf")?, file, &Expected::default(), Mode::Create)
//!     .await?;
//! println!("{} {} {}", outcome.label(), outcome.receipt().size, outcome.receipt().sha256);
//! # Ok(()) }
//! ```

mod backend;
pub mod blocking;
pub mod buffers;
pub mod claims;
pub mod cleanup;
pub mod control_metadata;
pub mod duration;
mod error;
mod file_copy;
pub mod group_commit;
mod key;
mod mode;
mod outcome;
pub mod owner;
pub mod problems;
mod promote;
mod put_options;
pub mod registry;
pub mod size;
mod spool;
mod staged;
mod store;
mod type_words;
mod verified_read;
mod verify;

pub use backend::{Backend, ByteStream, Check, Entry, Leftover, Meta, StagedCopy, StagedWrite};
pub use claims::{Claims, ControlStore, HeldClaim};
pub use error::{BoxError, Error, setting_origin};
pub use file_copy::STAGE_COPY_MIN;
pub use group_commit::GroupCommit;
pub use key::{Key, MAX_KEY_BYTES, MAX_SEGMENT_BYTES, RESERVED_SEGMENT};
pub use mode::{Capabilities, Mode};
pub use outcome::{Outcome, Receipt};
pub use owner::{Liveness, Owner};
pub use promote::CHUNK_SIZE;
pub use put_options::{DEFAULT_CONTENT_TYPE, PutOptions};
pub use registry::{BackendConfig, Registry};
pub use spool::sweep_spool;
pub use staged::Staged;
pub use store::Store;
pub use verify::{Digest, Digester, Expected, ParseSha256Error, Sha256};

pub use async_trait::async_trait;
pub use bytes::Bytes;
pub use figment;
