//! # promote-core: the atomic-promotion contract
//!
//! Land bytes in storage **all or nothing**. Bytes from any source are staged out of sight,
//! hashed with SHA-256 and counted on the way, checked against what the caller expects, and only
//! then published atomically at their final key — create-only by default. This crate is the
//! contract every backend implements and the one place where verification happens.
//!
//! # The contract, at the top level
//!
//! What a program that stores bytes through promote uses, and what a backend implements:
//! - [`Key`]: a validated, root-relative object name that cannot escape the storage root
//!   ([`MAX_KEY_BYTES`], [`MAX_SEGMENT_BYTES`], [`RESERVED_SEGMENT`]).
//! - [`Backend`] and [`StagedWrite`]: what a storage plugin implements (stage, write, publish,
//!   abort, head, read, delete, list, sweep), with what they take and give: [`StagedCopy`],
//!   [`Meta`], [`Entry`], [`Leftover`], [`Check`], [`ByteStream`].
//! - [`Store`]: a backend wrapped with core's checks; [`Store::stage`] gives a [`Staged`]
//!   handle, [`Store::promote_reader`] / [`Store::promote_stream`] run the whole
//!   stage → stream → verify → promote sequence, [`Store::promote_file`] lets the backend copy a
//!   large local file itself first ([`Backend::stage_copy`]: inside the kernel on local disk),
//!   [`Store::promote_spooled`] does it through a local spool file. [`Store::stage_resumable`]
//!   gives a handle whose [`Staged::checkpoint`] is a [`ResumePoint`] (the backend's token
//!   and the SHA-256 state) that a later process goes on from ([`Backend::stage_resumable`]:
//!   S3's multipart parts).
//! - [`Mode`] and [`Capabilities`]: create-only, replace, compare-and-swap, and which of them a
//!   backend can do safely.
//! - [`Expected`], [`Digest`], [`Sha256`], [`Digester`]: what the bytes must be, and how core
//!   hashes and counts them.
//! - [`Outcome`], [`Receipt`], [`Error`]: what comes out.
//!
//! # The kit, for backend authors: [`kit`]
//!
//! What only someone implementing a backend (or an engine over the contract, such as
//! `promote run`) needs, as OpenDAL keeps its `raw` module apart from its `types`:
//! - [`kit::blocking`]: blocking calls off the async threads; [`kit::buffers`]: chunk buffers
//!   for reuse; [`kit::cleanup`]: background clean-up an exiting program waits for.
//! - [`kit::Claims`] over a backend's [`kit::ControlStore`] ([`kit::claims`]): leases on names
//!   shared through the storage alone (serialized completions, shards of a `promote run`),
//!   judged by the server's clock; [`kit::control_metadata`]: a control object's body in
//!   metadata; [`kit::Owner`]: which process holds something, and whether it is still alive.
//! - [`kit::GroupCommit`] ([`kit::group_commit`]): one flush shared by concurrent promotions.
//! - [`kit::STAGE_COPY_MIN`], [`kit::CHUNK_SIZE`], [`kit::sweep_spool`],
//!   [`kit::format_size`].
//!
//! Configuration (the backend registry, `BackendConfig`, sizes and durations in config files,
//! `config validate`'s problems) is the `promote-settings` crate's. This crate depends on no
//! configuration library (no figment, no TOML; a unit test reads `Cargo.toml` to hold it so):
//! whatever needs one belongs there.
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
//! - `invalid_keys_rejected_before_io` (a unit test of [`Key`], once for all backends): a bad
//!   key is an error from [`Key::new`], and storage is only ever reached with a [`Key`].
//! - `sweep_removes_stale_staging_only`: leftovers of crashed writers are found and removed;
//!   a live writer's are not.
//! - `resumable_write_goes_on_from_its_checkpoint`: where a backend has resumable writes, a
//!   checkpoint's bytes outlive the handle, a handle gone on from holds exactly them, the
//!   object is every byte in order, and nothing is visible before the publish.
//!
//! What atomicity does not cover: durability across power loss is the backend's (the local
//! backend fsyncs data, publishes, then fsyncs the directory, unless told `durability = "none"`).
//! A backend may instead batch it ([`kit::GroupCommit`]): concurrent promotions share one flush of
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

mod adopt;
mod backend;
mod error;
mod file_copy;
mod key;
pub mod kit;
mod mode;
mod outcome;
mod promote;
mod put_options;
mod spool;
mod staged;
mod store;
mod verified_read;
mod verify;

pub use backend::{Backend, ByteStream, Check, Entry, Leftover, Meta, StagedCopy, StagedWrite};
pub use error::{BoxError, Error};
pub use key::{Key, MAX_KEY_BYTES, MAX_SEGMENT_BYTES, RESERVED_SEGMENT};
pub use mode::{Capabilities, Mode};
pub use outcome::{Outcome, Receipt};
pub use put_options::{DEFAULT_CONTENT_TYPE, PutOptions};
pub use staged::{ResumePoint, Staged};
pub use store::Store;
pub use verify::{Digest, Digester, Expected, ParseSha256Error, Sha256};

pub use async_trait::async_trait;
pub use bytes::Bytes;

#[cfg(test)]
mod tests {
    /// The contract depends on no configuration library: that is `promote-settings`' job (see
    /// the crate docs). Reads this crate's own manifest, so a figment or TOML dependency added
    /// here fails the unit tests, not only a review.
    #[test]
    fn no_configuration_library_among_the_dependencies() {
        let manifest = include_str!("../Cargo.toml");
        let mut section = "";
        for line in manifest.lines().map(str::trim) {
            if line.starts_with('[') {
                section = line;
                continue;
            }
            let name = line.split(['=', '.', ' ']).next().unwrap_or_default();
            if section.ends_with("dependencies]") && !line.starts_with('#') {
                assert!(
                    !["figment", "toml", "toml_edit", "config"].contains(&name),
                    "promote-core must not depend on {name:?} ({section}); configuration belongs in promote-settings"
                );
            }
        }
    }
}
