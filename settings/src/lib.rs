//! # promote-settings: promote's configuration
//!
//! Everything promote reads from a config file or the environment, on top of the contract in
//! `promote-core`: a backend table (`[backend]`, or `[targets.NAME]`) turned into an opened
//! backend by its `kind` ([`Registry`]), every problem of a configuration found at once for
//! `promote config validate` ([`problems`]), and the value formats every table shares — sizes
//! (`"8MiB"`, [`size`]) and durations (`"30s"`, [`duration`]). Configuration errors come out as
//! core's [`Error::Config`](promote_core::Error::Config), naming the full dotted key and the
//! file or environment variable it came from ([`config_error`], [`setting_origin`]).
//!
//! # Why the registry lives here, not in core
//!
//! The registry *is* configuration: it reads `kind` from a figment, extracts the backend's
//! `#[serde(deny_unknown_fields)]` struct from the same figment, and explains what is wrong in
//! figment's terms (which file, which variable). Its trait, [`BackendConfig`], serves the
//! configuration commands alone (`to_value` for `config show`, `check` for `config validate`,
//! `environment_values` for where a value came from); code that has a backend's config struct
//! in hand opens the backend directly (`LocalBackend::open`, `ObjectStoreBackend::s3`,
//! `OpendalBackend::open`). So both sit here, with figment, and `promote-core` depends on no
//! configuration library: a program that embeds only the contract (its own backend, a test
//! double, the types in its own API) compiles neither figment nor a TOML parser. Keeping a
//! figment-free `BackendConfig` in core instead would have taken no dependency out of anyone's
//! build (each backend crate reads its table with figment anyway, for paths relative to the
//! config file) and would have put a type that serves only `promote config` into the contract.
//!
//! `promote-core`'s `Cargo.toml` has no figment and must keep none; whatever needs figment
//! belongs in this crate.
//!
//! # Examples
//!
//! ```no_run
//! # async fn demo(registry: promote_settings::Registry) -> Result<(), promote_core::Error> {
//! use promote_settings::figment::Figment;
//! use promote_settings::figment::providers::{Format, Toml};
//! let figment = Figment::from(Toml::file("promote.toml"));
//! let config = registry.load(&figment)?;
//! let store = promote_core::Store::new(config.open().await?);
//! # let _ = store; Ok(()) }
//! ```

mod config_error;
pub mod duration;
pub mod problems;
pub mod registry;
pub mod size;
mod type_words;

pub use config_error::{config_error, setting_origin};
pub use registry::{BackendConfig, Registry};

pub use figment;
