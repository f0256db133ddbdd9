//! Who owns a staged upload or a claim: [`promote_core::kit::Owner`] (host, boot, pid namespace, pid,
//! process start, nonce), whose liveness is answerable on the host and pid namespace it ran in.

pub(crate) use promote_core::kit::Owner;
