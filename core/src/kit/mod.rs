//! The backend author's kit: helpers for implementing [`Backend`](crate::Backend) (and for
//! engines built over the contract), not part of the contract a user of a [`Store`](crate::Store)
//! sees.
//!
//! - [`blocking`]: run a blocking step off the async threads ([`blocking::run`]), or in place
//!   on a thread that may block already ([`blocking::Workers`]).
//! - [`buffers`]: chunk buffers kept for reuse ([`buffers::recycle`] what a write is done with).
//! - [`cleanup`]: clean-up that outlives a dropped handle ([`cleanup::spawn`]) and that an
//!   exiting program waits for ([`cleanup::settle`]).
//! - [`claims`]: leases on names shared through the storage alone, over a backend's
//!   [`ControlStore`] ([`Claims`], [`HeldClaim`]); [`control_metadata`]: a control object's body
//!   in user metadata; [`owner`]: which process holds something ([`Owner`], [`Liveness`]).
//! - [`group_commit`]: batched durability ([`GroupCommit`], returned from
//!   [`Backend::group_commit`](crate::Backend::group_commit)).
//! - [`STAGE_COPY_MIN`] (when [`Backend::stage_copy`](crate::Backend::stage_copy) is offered a
//!   file), [`CHUNK_SIZE`] (core's chunk), [`sweep_spool`] (leftovers of
//!   [`Store::promote_spooled`](crate::Store::promote_spooled)), [`format_size`] (sizes in
//!   messages).
//!
//! Each item is documented where it is defined; the contract's promises stay with the
//! contract (the crate root).

pub mod blocking;
pub mod buffers;
pub mod claims;
pub mod cleanup;
pub mod control_metadata;
pub mod group_commit;
mod human_size;
pub mod owner;

pub use claims::{Claims, ControlStore, HeldClaim};
pub use group_commit::{BATCH, GroupCommit};
pub use human_size::format_size;
pub use owner::{Liveness, Owner};

pub use crate::file_copy::STAGE_COPY_MIN;
pub use crate::promote::CHUNK_SIZE;
pub use crate::spool::sweep_spool;
