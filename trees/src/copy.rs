//! Objects from one store into another ("promotion between stages"). Each object streams from
//! the source, verified against its stored digest, through the destination's create-only
//! publish with that digest as the expected SHA-256. A destination that already holds it (its
//! stored digest says so) is answered from one `head`: a rerun reads no source bytes.

use futures_util::{Stream, StreamExt, TryStreamExt};
use promote_core::{Error as CoreError, Expected, Key, Meta, Mode, Outcome, PutOptions, Store};

use crate::error::Error;

/// One object to copy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Job {
    /// Its key in the source.
    pub src: Key,
    /// Its key in the destination.
    pub dst: Key,
}

/// Every object under `from` in `src` (`None`: the whole store), each to the same relative key
/// under `to`.
///
/// # Errors
///
/// When the source cannot be listed, or a destination key would be invalid.
pub async fn jobs_under(src: &Store, from: &Option<Key>, to: &Option<Key>) -> Result<Vec<Job>, Error> {
    let listed = match from {
        Some(p) => format!("{p}/"),
        None => String::new(),
    };
    let mut jobs = Vec::new();
    for entry in src.list(&listed).await? {
        let rel = &entry.key.as_str()[listed.len()..];
        jobs.push(Job { dst: crate::under(to, rel)?, src: entry.key });
    }
    Ok(jobs)
}

/// What a dry run found a real one would do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Would {
    /// Copy it (the destination does not have it, or the destination store does not exist).
    Copy,
    /// Nothing: the destination holds the same digest and size.
    AlreadyPresent,
    /// Fail: the destination holds something else at the key.
    Conflict,
}

impl Would {
    /// The word a dry run prints: `would copy`, `already-present`, `would conflict`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Copy => "would copy",
            Self::AlreadyPresent => "already-present",
            Self::Conflict => "would conflict",
        }
    }
}

/// What happened to one object.
#[derive(Clone, Debug)]
pub enum Copied {
    /// Promoted, or found already present, in the destination.
    Done(Outcome),
    /// Dry run: what a real run would do, with the source's metadata.
    Would(Would, Key, Meta),
}

/// Copies each of `jobs` from `src` into `dst` (`None` only in a dry run, when the destination
/// store does not exist yet), `at_once` at a time. The stream yields each job's result in the
/// order of `jobs`; one object's failure does not stop the others.
pub fn copy_all<'a>(
    src: &'a Store,
    dst: Option<&'a Store>,
    jobs: &'a [Job],
    dry_run: bool,
    at_once: usize,
) -> impl Stream<Item = (&'a Job, Result<Copied, Error>)> + 'a {
    futures_util::stream::iter(jobs)
        .map(move |job| async move { (job, copy_one(src, dst, job, dry_run).await) })
        .buffered(at_once.max(1))
}

/// Copies one object. The source's `head` gives its stored digest, which becomes the expected
/// SHA-256 of a create-only publish: core answers already-present from the destination's `head`
/// before the source stream is ever polled, so nothing is read from the source then.
///
/// # Errors
///
/// [`promote_core::Error::Modified`] for a source object changed since it was promoted; the
/// source's own error (a damaged object) rather than the publish's; the destination's.
pub async fn copy_one(src: &Store, dst: Option<&Store>, job: &Job, dry_run: bool) -> Result<Copied, Error> {
    let meta = src.head(&job.src).await?;
    if meta.changed_since_promotion {
        return Err(CoreError::Modified { key: job.src.to_string() }.into());
    }
    let expected = Expected { size: Some(meta.size), sha256: meta.sha256 };
    // The source's content type where it reports one, else guessed from the destination key.
    let options = PutOptions::with_content_type(meta.content_type.clone());
    if dry_run {
        let Some(dst) = dst else { return Ok(Copied::Would(Would::Copy, job.dst.clone(), meta)) };
        let would = match dst.head(&job.dst).await {
            Ok(there) if meta.sha256.is_some() && there.sha256 == meta.sha256 && there.size == meta.size => {
                Would::AlreadyPresent
            }
            Ok(_) => Would::Conflict,
            Err(CoreError::NotFound { .. }) => Would::Copy,
            Err(err) => return Err(err.into()),
        };
        return Ok(Copied::Would(would, job.dst.clone(), meta));
    }
    let Some(dst) = dst else {
        return Err(CoreError::config("the destination store is not open").into());
    };
    let (src, key) = (src.clone(), job.src.clone());
    // The source's own error (a damaged object), kept whole past the io::Error the publish sees.
    let source_error = std::sync::Arc::new(std::sync::Mutex::new(None));
    let slot = std::sync::Arc::clone(&source_error);
    // Opened on first poll only: an already-present answer never opens the source.
    let chunks = futures_util::stream::once(async move { src.read_checked(&key, meta).await })
        .map_ok(|(_, stream)| stream)
        .try_flatten()
        .map_err(move |err: CoreError| {
            let text = err.to_string();
            *slot.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(err);
            std::io::Error::other(text)
        });
    let dst = dst.clone().with_put_options(options);
    match dst.promote_stream(&job.dst, chunks, &expected, Mode::Create).await {
        Ok(outcome) => Ok(Copied::Done(outcome)),
        Err(err) => {
            let source = source_error.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
            Err(source.unwrap_or(err).into())
        }
    }
}
