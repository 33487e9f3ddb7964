//! The working file of an output: predictions go to `.NAME.partial` beside the destination,
//! flushed after every chunk, with a checkpoint (`.NAME.partial.state`) that says how much
//! of the input and of the file is done and what run made them. A finished run renames the
//! working file to its destination; an interrupted one (a crash, `kill -9`, a pre-empted job)
//! leaves both, and `--resume` continues from the checkpoint: the file is cut back to the
//! recorded length, the pairs already scored are read past, and the rest are appended, so the
//! result has exactly the rows of an uninterrupted run.
//!
//! Both files hold response text. They are created exclusively (a link planted at either name
//! is refused, never followed) and readable by the owner only; the finished output keeps
//! those permissions.

use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// What a run is; a resume must be the same run, field by field.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunIdentity {
    /// A digest of the bundle's file hashes and settings, and the precision.
    pub model: String,
    /// The input's path, size and modification time.
    pub input: String,
    /// Output format, shard and other options that change what is written.
    pub options: String,
}

impl RunIdentity {
    /// The first field that differs from `other`, with both values.
    fn difference(&self, other: &Self) -> Option<(&'static str, String, String)> {
        [
            ("model", &self.model, &other.model),
            ("input", &self.input, &other.input),
            ("options", &self.options, &other.options),
        ]
        .into_iter()
        .find(|(_, a, b)| a != b)
        .map(|(what, a, b)| (what, a.clone(), b.clone()))
    }
}

/// How far a run got: written after each chunk, once the chunk is in the working file.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Checkpoint {
    pub identity: RunIdentity,
    /// Input pairs consumed (scored, or passed over as another shard's).
    pub pairs_read: u64,
    /// Predictions in the working file.
    pub pairs_written: u64,
    /// Bytes of the working file that hold them (a torn last chunk lies beyond).
    pub bytes: u64,
    /// Bad input rows left out under `--on-error skip`.
    #[serde(default)]
    pub skipped: u64,
    /// Why, for the first [`MAX_SKIP_MESSAGES`] of them (file, line and field; never text).
    #[serde(default)]
    pub skip_messages: Vec<String>,
}

/// Skipped rows described one by one; beyond that they are only counted.
pub const MAX_SKIP_MESSAGES: usize = 1000;

/// What to do with a working file an earlier run left.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Leftover {
    /// Refuse to start, naming it (`predict` without `--resume`).
    Refuse,
    /// Continue it when it is the same run (`--resume`).
    Resume,
    /// Delete it and start again (outputs that are always rewritten, like analyze's).
    Replace,
}

#[derive(Debug, thiserror::Error)]
pub enum WorkingFileError {
    #[error("{} is left from an interrupted run; pass --resume to continue it, or delete it and {} to start again", work.display(), state.display())]
    Leftover { work: PathBuf, state: PathBuf },
    #[error("cannot resume {}: the {what} differs from the interrupted run's (then: {then}; now: {now}); delete it to start again", work.display())]
    Mismatch {
        work: PathBuf,
        what: &'static str,
        then: String,
        now: String,
    },
    #[error("cannot resume {}: its checkpoint {} is unreadable ({message}); delete both to start again", work.display(), state.display())]
    BadCheckpoint {
        work: PathBuf,
        state: PathBuf,
        message: String,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// An output being written; see the module's description.
pub struct WorkingFile {
    dest: PathBuf,
    work: PathBuf,
    state: PathBuf,
    file: File,
    checkpoint: Checkpoint,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> WorkingFileError + '_ {
    move |source| WorkingFileError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Opens for writing without following a link at `path`, creating it only when `create`
/// (and then exclusively), readable by the owner only.
fn open_private(path: &Path, create: bool) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW);
    if create {
        options.create_new(true);
    }
    options.open(path)
}

impl WorkingFile {
    /// Opens the working file of `dest`. The checkpoint says how far an earlier run of the
    /// same identity got (zero for a fresh start).
    pub fn open(
        dest: &Path,
        identity: RunIdentity,
        leftover: Leftover,
    ) -> Result<Self, WorkingFileError> {
        let name = dest
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("predictions");
        let work = dest.with_file_name(format!(".{name}.partial"));
        let state = dest.with_file_name(format!(".{name}.partial.state"));
        let exists = work.symlink_metadata().is_ok() || state.symlink_metadata().is_ok();
        if exists {
            match leftover {
                Leftover::Refuse => return Err(WorkingFileError::Leftover { work, state }),
                Leftover::Replace => {
                    for p in [&work, &state] {
                        match std::fs::remove_file(p) {
                            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                                return Err(io(p)(e))
                            }
                            _ => {}
                        }
                    }
                }
                Leftover::Resume => return Self::resume(dest, work, state, identity),
            }
        }
        let file = open_private(&work, true).map_err(io(&work))?;
        let mut out = Self {
            dest: dest.to_path_buf(),
            work,
            state,
            file,
            checkpoint: Checkpoint {
                identity,
                pairs_read: 0,
                pairs_written: 0,
                bytes: 0,
                skipped: 0,
                skip_messages: Vec::new(),
            },
        };
        out.save_checkpoint()?;
        Ok(out)
    }

    fn resume(
        dest: &Path,
        work: PathBuf,
        state: PathBuf,
        identity: RunIdentity,
    ) -> Result<Self, WorkingFileError> {
        let bad = |message: String| WorkingFileError::BadCheckpoint {
            work: work.clone(),
            state: state.clone(),
            message,
        };
        if state
            .symlink_metadata()
            .is_ok_and(|m| !m.file_type().is_file())
        {
            return Err(bad("not a regular file".into()));
        }
        let text = std::fs::read_to_string(&state).map_err(|e| bad(e.to_string()))?;
        let checkpoint: Checkpoint = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        if let Some((what, then, now)) = checkpoint.identity.difference(&identity) {
            return Err(WorkingFileError::Mismatch {
                work,
                what,
                then,
                now,
            });
        }
        let mut file = open_private(&work, false).map_err(io(&work))?;
        let len = file.metadata().map_err(io(&work))?.len();
        if len < checkpoint.bytes {
            return Err(bad(format!(
                "the checkpoint records {} bytes, the file has {len}",
                checkpoint.bytes
            )));
        }
        // Bytes past the checkpoint are a chunk whose checkpoint never came: cut them, the
        // chunk is scored again.
        file.set_len(checkpoint.bytes).map_err(io(&work))?;
        file.seek(SeekFrom::End(0)).map_err(io(&work))?;
        Ok(Self {
            dest: dest.to_path_buf(),
            work,
            state,
            file,
            checkpoint,
        })
    }

    /// How far the run already is.
    pub fn checkpoint(&self) -> &Checkpoint {
        &self.checkpoint
    }

    /// Appends one chunk's bytes, then records that `pairs_read` input pairs (`skipped`
    /// of them bad rows left out) and `pairs_written` more predictions are done.
    pub fn append(
        &mut self,
        bytes: &[u8],
        pairs_read: u64,
        pairs_written: u64,
        skipped: &[String],
    ) -> Result<(), WorkingFileError> {
        self.file.write_all(bytes).map_err(io(&self.work))?;
        let c = &mut self.checkpoint;
        c.bytes += bytes.len() as u64;
        c.pairs_read += pairs_read;
        c.pairs_written += pairs_written;
        c.skipped += skipped.len() as u64;
        let room = MAX_SKIP_MESSAGES.saturating_sub(c.skip_messages.len());
        c.skip_messages.extend(skipped.iter().take(room).cloned());
        self.save_checkpoint()
    }

    /// Replaces the checkpoint: written beside it exclusively, then renamed over it.
    fn save_checkpoint(&mut self) -> Result<(), WorkingFileError> {
        let tmp = self.state.with_extension("state.tmp");
        let _ = std::fs::remove_file(&tmp);
        let json = serde_json::to_vec(&self.checkpoint).map_err(|e| WorkingFileError::Io {
            path: tmp.clone(),
            source: e.into(),
        })?;
        let mut f = open_private(&tmp, true).map_err(io(&tmp))?;
        f.write_all(&json).map_err(io(&tmp))?;
        drop(f);
        std::fs::rename(&tmp, &self.state).map_err(io(&self.state))
    }

    /// Makes the output whole: synced, renamed into place, checkpoint removed.
    pub fn finish(self) -> Result<(), WorkingFileError> {
        self.file.sync_all().map_err(io(&self.work))?;
        std::fs::rename(&self.work, &self.dest).map_err(io(&self.dest))?;
        let _ = std::fs::remove_file(&self.state);
        Ok(())
    }

    /// Makes the output whole in another form: `convert` writes it from the working file
    /// (read from its path) to a file beside it, which is synced and renamed into place. If
    /// `convert` fails, the working file is kept for `--resume`.
    pub fn finish_converted(
        self,
        convert: impl FnOnce(&Path, File) -> std::io::Result<File>,
    ) -> Result<(), WorkingFileError> {
        self.file.sync_all().map_err(io(&self.work))?;
        let converted = self.converted();
        // Left by a conversion that was interrupted: it is made again from the working file.
        let _ = std::fs::remove_file(&converted);
        let file = open_private(&converted, true).map_err(io(&converted))?;
        let made = convert(&self.work, file).and_then(|f| f.sync_all());
        if let Err(e) = made {
            let _ = std::fs::remove_file(&converted);
            return Err(io(&self.dest)(e));
        }
        std::fs::rename(&converted, &self.dest).map_err(io(&self.dest))?;
        let _ = std::fs::remove_file(&self.work);
        let _ = std::fs::remove_file(&self.state);
        Ok(())
    }

    /// Where [`WorkingFile::finish_converted`] writes.
    fn converted(&self) -> PathBuf {
        let mut name = self.work.clone().into_os_string();
        name.push(".converting");
        PathBuf::from(name)
    }

    /// Removes the working file and its checkpoint.
    pub fn remove(self) {
        let _ = std::fs::remove_file(self.converted());
        let _ = std::fs::remove_file(&self.work);
        let _ = std::fs::remove_file(&self.state);
    }

    /// Where the predictions so far are.
    pub fn path(&self) -> &Path {
        &self.work
    }
}
