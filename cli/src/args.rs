//! Command-line flags, parsed into plain structs first (clap), turned into real objects later.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use promote_core::Sha256;

const EXIT_CODES: &str = "\
Exit codes:
    0  success (promoted, already present, or done)
    1  doctor found a problem
    2  usage error, invalid key or input, configuration error (also `no store at …`), or a mode
       the backend cannot do safely
    3  conflict: the key holds different content; nothing was replaced
    4  verification failed: size or SHA-256 mismatch; nothing was published
    5  not found
    6  backend or I/O error (disk full, permissions, network); retrying may help
    7  `config validate` found the configuration invalid
  130  interrupted by Ctrl-C (SIGINT): the staged write was discarded (run: summary and report kept)
  141  standard output closed by its reader (broken pipe, SIGPIPE, as in `| head`): stopped quietly
  143  terminated (SIGTERM): the staged write was discarded (run: summary and report kept)

Configuration: built-in defaults < TOML file (--config, else $PROMOTE_CONFIG, else the first of
./promote.toml, $XDG_CONFIG_HOME/promote/promote.toml, /etc/promote/promote.toml) < PROMOTE_*
environment variables (PROMOTE_BACKEND__ROOT=/data) < flags. Profiles: --profile / PROMOTE_PROFILE;
named targets: --target / PROMOTE_TARGET. See `promote config show` and `promote config validate`.";

/// Land files in storage all or nothing: streamed, SHA-256 verified, published atomically,
/// create-only by default.
#[derive(Debug, Parser)]
#[command(name = "promote", version, after_long_help = EXIT_CODES, after_help = EXIT_CODES)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: Global,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Flags every command takes (listed under their own heading in each command's help).
#[derive(Debug, Args)]
#[command(next_help_heading = "Global options")]
pub(crate) struct Global {
    /// Configuration file (TOML). Default: $PROMOTE_CONFIG, else the first found of
    /// ./promote.toml, $XDG_CONFIG_HOME/promote/promote.toml, /etc/promote/promote.toml.
    #[arg(long, global = true, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// Configuration profile (a `[NAME]` table of the config file). Default: $PROMOTE_PROFILE,
    /// else `default`.
    #[arg(long, global = true, value_name = "NAME")]
    pub(crate) profile: Option<String>,
    /// Named target (a `[targets.NAME]` table). Default: $PROMOTE_TARGET, else `default_target`,
    /// else the `[backend]` table.
    #[arg(long, global = true, value_name = "NAME")]
    pub(crate) target: Option<String>,
    /// Backend kind (sets backend.kind); `parse` lists the kinds built in.
    #[arg(long, global = true, value_name = "KIND")]
    pub(crate) backend: Option<String>,
    /// Storage root for the local backend (sets `root` of the backend table in force: `[backend]`, or the selected target).
    #[arg(long, global = true, value_name = "DIR")]
    pub(crate) root: Option<PathBuf>,
    /// `--durability` of the commands that take it (put, run, copy), for the configuration layers.
    #[arg(skip)]
    pub(crate) durability: Option<String>,
    /// `--streaming` of the commands that take it (put, run), for the configuration layers.
    #[arg(skip)]
    pub(crate) streaming: Option<bool>,
    /// Log what happens to stderr (-v info, -vv debug, -vvv trace). RUST_LOG also works.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub(crate) verbose: u8,
}

/// Parses the command line. `--backend` lists the kinds the registry knows.
///
/// # Errors
///
/// clap's error (usage, or the help and version texts it prints).
pub(crate) fn parse() -> Result<Cli, clap::Error> {
    use clap::{CommandFactory, FromArgMatches};
    let kinds: Vec<&'static str> = crate::backends::registry().kinds().collect();
    let command = Cli::command().mut_arg("backend", |arg| {
        arg.help("Backend kind (sets `kind` of the backend table in force)")
            .value_parser(clap::builder::PossibleValuesParser::new(kinds))
    });
    Cli::from_arg_matches(&command.try_get_matches()?)
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Promote a file (or `-` for stdin, or a directory, recursively) to KEY.
    Put(PutArgs),
    /// Copy the object at KEY to DEST (or `-` for stdout), or every object under PREFIX/ into
    /// DIR with -r, verifying each against its stored digest.
    Get(GetArgs),
    /// Re-read the object at KEY (or every object under PREFIX/ with -r), recompute its SHA-256
    /// and compare it with the stored one.
    Verify(VerifyArgs),
    /// List objects under PREFIX, one level (directories end in `/`), or all with -r.
    Ls(LsArgs),
    /// Size, stored SHA-256, version, modification time and content type of the object at KEY.
    Stat(StatArgs),
    /// Remove objects: KEY…, or every object under PREFIX/ with -r.
    Rm(RmArgs),
    /// Remove staging data left behind by crashed or abandoned writers.
    Recover(RecoverArgs),
    /// Check the configuration and the backend, including a live create-only probe.
    Doctor(DoctorArgs),
    /// Download a manifest's items (JSON Lines: source, key, sha256?, size?) into storage, each
    /// exactly once, verified, resumable after a crash.
    Run(RunArgs),
    /// Show a run directory's ledger: jobs by state, leases, failures.
    Status(StatusArgs),
    /// Copy objects between named targets, verified: TARGET:KEY or TARGET:PREFIX/. Keys whose
    /// stored digest already matches at the destination are skipped without reading them.
    Copy(CopyArgs),
    /// Inspect, check, describe or start the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
}

impl Command {
    /// Whether the command prints JSON (`--json`): its failure is then a JSON record too.
    pub(crate) fn json(&self) -> bool {
        match self {
            Self::Put(a) => a.json,
            Self::Get(a) => a.json,
            Self::Verify(a) => a.json,
            Self::Ls(a) => a.json,
            Self::Stat(a) => a.json,
            Self::Rm(a) => a.json,
            Self::Recover(a) => a.json,
            Self::Doctor(a) => a.json,
            Self::Run(a) => a.json,
            Self::Status(a) => a.json,
            Self::Copy(a) => a.json,
            Self::Config(ConfigCommand::Show { json }) => *json,
            Self::Config(_) => false,
        }
    }
}

#[derive(Debug, Args)]
pub(crate) struct CopyArgs {
    /// The source: TARGET:KEY, or TARGET:PREFIX/ for every object under the prefix; or an
    /// address, s3://BUCKET/KEY, s3://BUCKET/PREFIX/ (az://CONTAINER/… for Azure Blob).
    pub(crate) src: String,
    /// The destination: TARGET:KEY, or TARGET:PREFIX/ (the source's relative keys go under it);
    /// or an address, s3://BUCKET/KEY or s3://BUCKET/PREFIX/.
    pub(crate) dst: String,
    /// Report what would be copied or skipped; copy nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Objects copied at once (1 or more).
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..))]
    pub(crate) jobs: u16,
    /// One JSON object per key on stdout (failures too).
    #[arg(long)]
    pub(crate) json: bool,
    /// Print nothing on success: no receipts, no summary, no progress. Errors and warnings still
    /// go to stderr, exit codes are unchanged; --json records still print (they are data).
    #[arg(short, long)]
    pub(crate) quiet: bool,
    /// When to show progress on stderr: `auto` (on a terminal, not with -q or --json), `always`
    /// (also off a terminal, also with --json; not with -q), `never`.
    #[arg(long, value_name = "WHEN", value_enum, default_value_t)]
    pub(crate) progress: ProgressWhen,
    /// Local backend: how promotions wait for the disk (sets backend.durability). `each`: every
    /// object fsynced on its own; `batch`: group commit, many objects made durable by one flush,
    /// same guarantee (a receipt means it survives power loss); `none`: no fsync (scratch data).
    #[arg(long, value_name = "MODE", value_parser = ["each", "batch", "none"])]
    pub(crate) durability: Option<String>,
    /// Which files or objects (see the README's filters).
    #[command(flatten)]
    pub(crate) filters: crate::filters::FilterArgs,
}

#[derive(Debug, Args)]
pub(crate) struct PutArgs {
    /// A file, `-` for stdin, or a directory (every file under it, KEY as the prefix).
    pub(crate) src: PathBuf,
    /// Where the object goes (for a directory: the key prefix). Also s3://BUCKET/KEY or
    /// az://CONTAINER/KEY, with no config file (settings from AWS_* / ~/.aws, AZURE_STORAGE_*).
    pub(crate) key: String,
    /// Refuse unless the bytes have this SHA-256 (64 hex digits).
    #[arg(long, value_name = "HEX")]
    pub(crate) sha256: Option<Sha256>,
    /// Refuse unless the bytes are exactly this long: bytes, or with a unit (1KiB, 8MiB, 2GB).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub(crate) size: Option<u64>,
    /// Overwrite an existing object atomically instead of refusing.
    #[arg(long)]
    pub(crate) replace: bool,
    /// Overwrite only if the object is still at this version (compare-and-swap).
    #[arg(long, value_name = "VERSION", conflicts_with = "replace")]
    pub(crate) if_version: Option<String>,
    /// The object's media type (Content-Type), for S3 and OpenDAL; default: from KEY's
    /// extension (a.json: application/json), else application/octet-stream. Local disk keeps none.
    #[arg(long, value_name = "TYPE", value_parser = promote_core::PutOptions::parse_content_type)]
    pub(crate) content_type: Option<String>,
    /// One JSON object per file on stdout (failures too).
    #[arg(long)]
    pub(crate) json: bool,
    /// For a directory: files promoted at once (1 or more).
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..))]
    pub(crate) jobs: u16,
    /// For a directory: follow symbolic links (default: skip them, with a notice).
    #[arg(short = 'L', long)]
    pub(crate) follow_symlinks: bool,
    /// Print nothing on success: no receipts, no summary, no progress. Errors and warnings still
    /// go to stderr, exit codes are unchanged; --json records still print (they are data).
    #[arg(short, long)]
    pub(crate) quiet: bool,
    /// When to show progress on stderr: `auto` (on a terminal, not with -q or --json), `always`
    /// (also off a terminal, also with --json; not with -q), `never`.
    #[arg(long, value_name = "WHEN", value_enum, default_value_t)]
    pub(crate) progress: ProgressWhen,
    /// Stream the source straight into staging (true) or spool it to a local file first (false).
    #[arg(long, value_name = "BOOL")]
    pub(crate) streaming: Option<bool>,
    /// Local backend: how promotions wait for the disk (sets backend.durability). `each`: every
    /// object fsynced on its own; `batch`: group commit, many objects made durable by one flush,
    /// same guarantee (a receipt means it survives power loss); `none`: no fsync (scratch data).
    #[arg(long, value_name = "MODE", value_parser = ["each", "batch", "none"])]
    pub(crate) durability: Option<String>,
    /// Which files or objects (see the README's filters).
    #[command(flatten)]
    pub(crate) filters: crate::filters::FilterArgs,
}

/// `--progress`: when a command shows its progress on stderr.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ProgressWhen {
    /// On a terminal, unless -q or --json.
    #[default]
    Auto,
    /// Also off a terminal and with --json (not with -q).
    Always,
    /// Never.
    Never,
}

impl ProgressWhen {
    /// Whether progress shows, given -q, --json and whether stderr is a terminal.
    pub(crate) fn shown(self, quiet: bool, json: bool, terminal: bool) -> bool {
        match self {
            _ if quiet => false,
            Self::Always => true,
            Self::Never => false,
            Self::Auto => terminal && !json,
        }
    }
}

/// A size: bytes, or a number with a unit (`1KiB`, `8MiB`, `2GB`), as in the config file.
fn parse_size(text: &str) -> Result<u64, String> {
    promote_settings::size::parse(text)
}

#[derive(Debug, Args)]
pub(crate) struct GetArgs {
    /// The object's key.
    pub(crate) key: String,
    /// A file path, an existing directory, or `-` for stdout.
    pub(crate) dest: PathBuf,
    /// Replace DEST if it exists; read an object modified since promotion anyway (checked
    /// against its size only).
    #[arg(long)]
    pub(crate) force: bool,
    /// KEY is a prefix (`papers/`): copy every object under it into the directory DEST.
    #[arg(short, long)]
    pub(crate) recursive: bool,
    /// Print nothing on success: no receipts, no summary, no progress. Errors and warnings still
    /// go to stderr, exit codes are unchanged; --json records still print (they are data).
    #[arg(short, long)]
    pub(crate) quiet: bool,
    /// When to show progress on stderr: `auto` (on a terminal, not with -q or --json), `always`
    /// (also off a terminal, also with --json; not with -q), `never`.
    #[arg(long, value_name = "WHEN", value_enum, default_value_t)]
    pub(crate) progress: ProgressWhen,
    /// One JSON object per file copied (failures too); not with DEST `-`.
    #[arg(long)]
    pub(crate) json: bool,
    /// Which files or objects (see the README's filters).
    #[command(flatten)]
    pub(crate) filters: crate::filters::FilterArgs,
}

#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// The object's key (with -r: a prefix).
    pub(crate) key: String,
    /// KEY is a prefix: verify every object under it and print a summary.
    #[arg(short, long)]
    pub(crate) recursive: bool,
    /// Also require this SHA-256.
    #[arg(long, value_name = "HEX")]
    pub(crate) sha256: Option<Sha256>,
    /// Print the result as JSON.
    #[arg(long)]
    pub(crate) json: bool,
    /// Print nothing on success: no receipts, no summary, no progress. Errors and warnings still
    /// go to stderr, exit codes are unchanged; --json records still print (they are data).
    #[arg(short, long)]
    pub(crate) quiet: bool,
    /// Which files or objects (see the README's filters).
    #[command(flatten)]
    pub(crate) filters: crate::filters::FilterArgs,
}

#[derive(Debug, Args)]
pub(crate) struct LsArgs {
    /// Only keys starting with this (default, or `/`: the top of the store).
    pub(crate) prefix: Option<String>,
    /// One JSON object per key.
    #[arg(long)]
    pub(crate) json: bool,
    /// Size, SHA-256 (when stored) and modification time, in columns.
    #[arg(short, long)]
    pub(crate) long: bool,
    /// Every key under PREFIX, not one level.
    #[arg(short, long)]
    pub(crate) recursive: bool,
    /// Which files or objects (see the README's filters).
    #[command(flatten)]
    pub(crate) filters: crate::filters::FilterArgs,
}

#[derive(Debug, Args)]
pub(crate) struct StatArgs {
    /// The object's key.
    pub(crate) key: String,
    /// Print as JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct RmArgs {
    /// Keys to remove (with -r: prefixes).
    #[arg(required = true)]
    pub(crate) keys: Vec<String>,
    /// Remove every object under each PREFIX.
    #[arg(short, long)]
    pub(crate) recursive: bool,
    /// With -r and the prefix `/` (the top of the store): remove everything in the store.
    #[arg(long, requires = "recursive")]
    pub(crate) all: bool,
    /// A missing key is not an error.
    #[arg(short, long)]
    pub(crate) force: bool,
    /// One JSON object per removed key.
    #[arg(long)]
    pub(crate) json: bool,
    /// Which files or objects (see the README's filters).
    #[command(flatten)]
    pub(crate) filters: crate::filters::FilterArgs,
}

#[derive(Debug, Args)]
pub(crate) struct RecoverArgs {
    /// Also remove staging data a live writer has left untouched this long (e.g. 30m, 2h).
    /// Data whose writer is gone is removed whatever its age, where the backend can tell.
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = humantime::parse_duration)]
    pub(crate) older_than: std::time::Duration,
    /// Only report what would be removed.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// One JSON object per leftover.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct DoctorArgs {
    /// Print the checks as JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// The manifest: one JSON object a line, `{"source": URL or path, "key": KEY, "sha256"?, "size"?}`.
    pub(crate) manifest: PathBuf,
    /// The run directory: ledger, partial downloads (config run.out, default ./promote-run).
    #[arg(long, value_name = "DIR")]
    pub(crate) out: Option<PathBuf>,
    /// Stop after the first N items (config run.max).
    #[arg(long, value_name = "N")]
    pub(crate) max: Option<u64>,
    /// Items fetched at once (config run.concurrency, default 8).
    #[arg(long, value_name = "N")]
    pub(crate) concurrency: Option<usize>,
    /// Requests to one host at once (config run.per_host, default 4).
    #[arg(long, value_name = "N")]
    pub(crate) per_host: Option<usize>,
    /// Parallel range requests per large item, for servers that take ranges (config
    /// run.segments, default 1: one stream; at most 16). Connections beyond an item's first
    /// count against --per-host and are taken only when free.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=16))]
    pub(crate) segments: Option<u16>,
    /// Check the manifest and report what would be fetched; fetch nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Write the summary as JSON, with one entry per item, to FILE; a FILE ending in .jsonl
    /// gets JSON Lines, written as items end: a line per item, then a line of totals.
    #[arg(long, value_name = "FILE")]
    pub(crate) report: Option<PathBuf>,
    /// Print the summary (the --report JSON) on stdout, on one line; no progress.
    #[arg(long)]
    pub(crate) json: bool,
    /// Print nothing on success: no receipts, no summary, no progress. Errors and warnings still
    /// go to stderr, exit codes are unchanged; --json records still print (they are data).
    #[arg(short, long)]
    pub(crate) quiet: bool,
    /// When to show progress on stderr: `auto` (a bar on a terminal, a line every few seconds
    /// elsewhere; not with -q or --json), `always`
    /// (also off a terminal, also with --json; not with -q), `never`.
    #[arg(long, value_name = "WHEN", value_enum, default_value_t)]
    pub(crate) progress: ProgressWhen,
    /// Stream small items straight into staging (true) or spool them to a local file first (false).
    #[arg(long, value_name = "BOOL")]
    pub(crate) streaming: Option<bool>,
    /// Local backend: how promotions wait for the disk (sets backend.durability). `each`: every
    /// object fsynced on its own; `batch`: group commit, many objects made durable by one flush,
    /// same guarantee (a receipt means it survives power loss); `none`: no fsync (scratch data).
    #[arg(long, value_name = "MODE", value_parser = ["each", "batch", "none"])]
    pub(crate) durability: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    /// The run directory (default: config run.out, else ./promote-run).
    pub(crate) dir: Option<PathBuf>,
    /// Print as JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ConfigCommand {
    /// The effective configuration, each value with where it came from; secrets redacted.
    Show {
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Check the whole config file (every profile, every target) without touching storage;
    /// report every problem at once. Exits 7 when the configuration is invalid.
    Validate {
        /// Also run `doctor` against each target of the profile in force (live).
        #[arg(long)]
        live: bool,
    },
    /// Print a JSON Schema of the config file (for editors that complete and check TOML).
    Schema,
    /// Write a commented starter config file (never over an existing file).
    Init {
        /// The backend kind the starter file configures.
        #[arg(long, value_name = "KIND", default_value = "local", value_parser = ["local", "s3"])]
        kind: String,
        /// Where to write it.
        #[arg(long, value_name = "FILE", default_value = "promote.toml")]
        path: PathBuf,
    },
}
