//! [`LocalBackend`]: the `Backend` trait on a local directory.

use std::fs::File;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use promote_core::kit::{CHUNK_SIZE, GroupCommit};
use promote_core::{
    Backend, ByteStream, Bytes, Capabilities, Check, Entry, Error, Expected, Key, Leftover, Meta, StagedWrite,
    async_trait,
};
use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

use crate::config::{Durability, LocalConfig};
use crate::group::LocalGroup;
#[cfg(target_os = "linux")]
use crate::kernel_copy;
use crate::root::{Root, io_err};
use crate::writer::LocalStaged;
use crate::{list, prune, self_check, staging, stored_digest};

/// Objects as files under a root directory. See the crate docs for the guarantees.
#[derive(Clone, Debug)]
pub struct LocalBackend {
    inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) root: Root,
    pub(crate) config: LocalConfig,
    xattrs: bool,
}

impl LocalBackend {
    /// Opens (creating if missing) the root directory and its staging area. Blocking.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when the root cannot be created or opened.
    pub fn open(config: LocalConfig) -> Result<Self, Error> {
        let root = Root::open(&config.root, config.dir_mode, config.durability.syncs())?;
        Ok(Self::with_root(root, config))
    }

    /// Opens an existing root without creating or changing anything, for commands that only
    /// read (list, read, verify, a dry-run sweep). A root that was never written to has no
    /// staging area: staging then fails, and a sweep finds nothing. Blocking.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] (`no store at …`) when the root does not exist; [`Error::Io`] when it
    /// cannot be opened.
    pub fn open_existing(config: LocalConfig) -> Result<Self, Error> {
        let root = Root::open_existing(&config.root)?;
        Ok(Self::with_root(root, config))
    }

    fn with_root(root: Root, config: LocalConfig) -> Self {
        // Asked without writing, so read-only commands and dry runs change nothing.
        let xattrs = if root.staging.exists() {
            stored_digest::supported(&root.staging)
        } else {
            stored_digest::supported(&root.dir)
        };
        Self { inner: Arc::new(Inner { root, config, xattrs }) }
    }

    /// The root directory, absolute.
    pub fn root(&self) -> &Path {
        &self.inner.root.path
    }

    async fn blocking<T, F>(&self, f: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T, Error> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        promote_core::kit::blocking::run(move || f(&inner)).await?
    }
}

/// Opens the regular file at `key` for reading, never following a link.
fn open_object(root: &Root, key: &Key) -> Result<File, Error> {
    let parent = root.parent_of(key, None)?;
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK;
    let fd: OwnedFd = match rustix::fs::openat(&parent, key.file_name(), flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::NOENT | Errno::NOTDIR) => return Err(Error::NotFound { key: key.to_string() }),
        Err(Errno::LOOP) => {
            return Err(Error::InvalidKey {
                key: key.to_string(),
                reason: "a symbolic link stands at that path; promote never follows links".into(),
            });
        }
        Err(e) => return Err(io_err(format!("opening {key:?}"), e)),
    };
    let st = rustix::fs::fstat(&fd).map_err(|e| io_err(format!("inspecting {key:?}"), e))?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Err(Error::NotFound { key: key.to_string() });
    }
    Ok(File::from(fd))
}

fn version(st: &rustix::fs::Stat) -> String {
    format!("{}-{}.{:09}", st.st_ino, st.st_mtime, st.st_mtime_nsec)
}

#[async_trait]
impl Backend for LocalBackend {
    fn kind(&self) -> &'static str {
        "local"
    }

    fn location(&self) -> String {
        format!("local:{}", self.inner.root.path.display())
    }

    fn group_commit(&self) -> Option<Arc<dyn GroupCommit>> {
        (self.inner.config.durability == Durability::Batch)
            .then(|| Arc::new(LocalGroup::new(Arc::clone(&self.inner))) as Arc<dyn GroupCommit>)
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            create_refused: None,
            replace: true,
            replace_if_version: false,
            stored_digest: self.inner.xattrs,
            durable: self.inner.config.durability.syncs(),
            staging_outlives_writer: true,
        }
    }

    async fn stage(&self, key: &Key, _expected: &Expected) -> Result<Box<dyn StagedWrite>, Error> {
        if !self.inner.root.staging.exists() {
            return Err(Error::Unsupported {
                operation: format!("writing {key:?} through a read-only open of a store with no staging area yet"),
                backend: "local".into(),
            });
        }
        let key = key.clone();
        let inner = Arc::clone(&self.inner);
        // The handle is made on the blocking thread: if this future is dropped while the file is
        // being created (Ctrl-C, a closed pipe), tokio drops the finished handle, which removes it.
        let staged = promote_core::kit::blocking::run(move || {
            let (name, file) = staging::create(&inner.root, &key)?;
            Ok::<_, Error>(LocalStaged::start(inner, key, name, file))
        })
        .await??;
        Ok(Box::new(staged))
    }

    #[cfg(target_os = "linux")]
    async fn adopt(
        &self,
        key: &Key,
        path: &Path,
        file: File,
        size: u64,
    ) -> Result<Option<Box<dyn StagedWrite>>, Error> {
        if !self.inner.root.staging.exists() {
            return Ok(None);
        }
        let (inner, key, path) = (Arc::clone(&self.inner), key.clone(), path.to_owned());
        // On the blocking thread, like `stage`: if this future is dropped once the file is
        // staged, the finished handle is dropped with it, which discards it.
        let staged =
            promote_core::kit::blocking::run(move || crate::adopt::adopt(&inner, &key, &path, file, size)).await??;
        Ok(staged.map(|staged| Box::new(staged) as Box<dyn StagedWrite>))
    }

    #[cfg(target_os = "linux")]
    async fn stage_copy(
        &self,
        key: &Key,
        source: &File,
        expected: &Expected,
    ) -> Result<promote_core::StagedCopy, Error> {
        if !self.inner.root.staging.exists() {
            return Ok(promote_core::StagedCopy::Declined("the store was opened for reading only".into()));
        }
        // The same open file, so the copy moves the offset the caller (and a progress bar) sees.
        let source = source.try_clone().map_err(|e| Error::io(format!("duplicating the source of {key:?}"), e))?;
        let (inner, key, expected) = (Arc::clone(&self.inner), key.clone(), *expected);
        // Dropped with this future: a caller that gives up stops the copy at its next step.
        let cancel = kernel_copy::Cancel::default();
        let cancelled = cancel.flag();
        let copied =
            promote_core::kit::blocking::run(move || kernel_copy::stage(&inner, &key, &source, &expected, &cancelled))
                .await;
        drop(cancel);
        copied?
    }

    async fn forget_digest(&self, key: &Key) -> Result<(), Error> {
        let key = key.clone();
        self.blocking(move |inner| {
            if !inner.xattrs {
                return Ok(());
            }
            let file = open_object(&inner.root, &key)?;
            stored_digest::forget(&file).map_err(|e| io_err(format!("marking {key:?} damaged"), e))?;
            Ok(())
        })
        .await
    }

    async fn head(&self, key: &Key) -> Result<Meta, Error> {
        let key = key.clone();
        self.blocking(move |inner| {
            let file = open_object(&inner.root, &key)?;
            let st = rustix::fs::fstat(&file).map_err(|e| io_err(format!("inspecting {key:?}"), e))?;
            let recorded = if inner.xattrs { stored_digest::load(&file, &st) } else { stored_digest::Recorded::Absent };
            let modified = std::time::UNIX_EPOCH
                .checked_add(std::time::Duration::new(st.st_mtime.max(0) as u64, st.st_mtime_nsec as u32));
            Ok(Meta {
                size: st.st_size as u64,
                changed_since_promotion: recorded == stored_digest::Recorded::Stale,
                content_type: None,
                sha256: match recorded {
                    stored_digest::Recorded::Valid(sha256) => Some(sha256),
                    _ => None,
                },
                version: Some(version(&st)),
                modified,
            })
        })
        .await
    }

    async fn read(&self, key: &Key) -> Result<ByteStream, Error> {
        let key = key.clone();
        let file = self
            .blocking({
                let key = key.clone();
                move |inner| open_object(&inner.root, &key)
            })
            .await?;
        let stream = futures_util::stream::try_unfold(Some(file), move |file| {
            let key = key.clone();
            async move {
                let Some(mut file) = file else { return Ok(None) };
                let (file, chunk) = tokio::task::spawn_blocking(move || {
                    let mut buf = Vec::with_capacity(CHUNK_SIZE);
                    let n = (&mut file).take(CHUNK_SIZE as u64).read_to_end(&mut buf)?;
                    Ok::<_, std::io::Error>((if n == 0 { None } else { Some(file) }, buf))
                })
                .await
                .map_err(std::io::Error::other)
                .and_then(|r| r)
                .map_err(|e| Error::io(format!("reading {key:?}"), e))?;
                Ok(file.map(|f| (Bytes::from(chunk), Some(f))))
            }
        });
        Ok(Box::pin(stream))
    }

    async fn delete(&self, key: &Key) -> Result<(), Error> {
        let key = key.clone();
        self.blocking(move |inner| {
            // Refuses links and directories the same way reads do.
            drop(open_object(&inner.root, &key)?);
            let parent = inner.root.parent_of(&key, None)?;
            match rustix::fs::unlinkat(&parent, key.file_name(), AtFlags::empty()) {
                Ok(()) => {}
                Err(Errno::NOENT) => return Err(Error::NotFound { key: key.to_string() }),
                Err(e) => return Err(io_err(format!("removing {key:?}"), e)),
            }
            let sync = inner.config.durability.syncs();
            if sync {
                rustix::fs::fsync(&parent).map_err(|e| io_err(format!("fsync after removing {key:?}"), e))?;
            }
            drop(parent);
            prune::empty_dirs(&inner.root, &key, sync);
            Ok(())
        })
        .await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<Entry>, Error> {
        let prefix = prefix.to_owned();
        self.blocking(move |inner| list::list(&inner.root, &prefix)).await
    }

    async fn self_check(&self) -> Vec<Check> {
        let checks = self
            .blocking(|inner| Ok(vec![self_check::filesystem(&inner.root), self_check::publish_method(&inner.root)]));
        let mut checks = checks.await.unwrap_or_else(|e| vec![Check::fail("local checks", e.to_string())]);
        checks.push(Check::pass("durability", self.inner.config.durability.after_power_loss()));
        checks
    }

    async fn sweep_staging(&self, older_than: Duration, dry_run: bool) -> Result<Vec<Leftover>, Error> {
        if !self.inner.root.staging.exists() {
            return Ok(Vec::new());
        }
        self.blocking(move |inner| staging::sweep(&inner.root, older_than, dry_run)).await
    }
}
