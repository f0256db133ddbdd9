//! `--include GLOB` / `--exclude GLOB`: which files of a directory `put`, or which objects under a
//! prefix (`get -r`, `ls`, `verify -r`, `rm -r`, `copy`), a command acts on, as rclone users
//! expect.
//!
//! Patterns match the path *relative to* the directory or prefix, with `/` between segments:
//! `*` and `?` stay within a segment, `**` crosses them, `{a,b}` and `[ab]` as usual. A pattern
//! without `/` matches the name at any depth (`*.pdf` is every PDF); one with `/` matches from
//! the top (`raw/**`, `2024/*/index.json`; a leading `/` is allowed). A path is selected when it
//! matches some `--include` (or none is given) and no `--exclude`.

use clap::Args;
use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};

use crate::commands::usage;

/// The filter flags a command takes.
#[derive(Debug, Args, Clone, Default)]
pub(crate) struct FilterArgs {
    /// Only paths matching GLOB (relative to the directory or prefix; `*.pdf` at any depth,
    /// `raw/**` from the top). Repeatable: any of them.
    #[arg(long, value_name = "GLOB")]
    pub(crate) include: Vec<String>,
    /// Not paths matching GLOB (as --include). Repeatable; wins over --include.
    #[arg(long, value_name = "GLOB")]
    pub(crate) exclude: Vec<String>,
}

/// Compiled filters.
#[derive(Debug)]
pub(crate) struct Filter {
    include: Option<GlobSet>,
    exclude: GlobSet,
}

impl FilterArgs {
    /// Whether any filter was given.
    pub(crate) fn any(&self) -> bool {
        !self.include.is_empty() || !self.exclude.is_empty()
    }

    /// The compiled filter.
    ///
    /// # Errors
    ///
    /// A usage error naming a pattern that is not a glob.
    pub(crate) fn compile(&self) -> anyhow::Result<Filter> {
        let include = if self.include.is_empty() { None } else { Some(set(&self.include, "--include")?) };
        Ok(Filter { include, exclude: set(&self.exclude, "--exclude")? })
    }

    /// A usage error when filters were given where they select nothing (one file, one key).
    ///
    /// # Errors
    ///
    /// When any filter was given.
    pub(crate) fn refuse(&self, what: &str) -> anyhow::Result<()> {
        if self.any() {
            return Err(usage(format!(
                "--include and --exclude select files of a directory or objects under a prefix, not {what}"
            )));
        }
        Ok(())
    }
}

impl Filter {
    /// Whether `rel` (a path relative to the directory or prefix, `/`-separated) is selected.
    pub(crate) fn selects(&self, rel: &str) -> bool {
        self.include.as_ref().is_none_or(|set| set.is_match(rel)) && !self.exclude.is_match(rel)
    }
}

fn set(patterns: &[String], flag: &str) -> anyhow::Result<GlobSet> {
    let mut builder = GlobSetBuilder::new();
    for pattern in patterns {
        builder.add(glob(pattern).map_err(|e| usage(format!("{flag} {pattern:?} is not a glob: {e}")))?);
    }
    builder.build().map_err(|e| usage(format!("{flag}: {e}")))
}

/// One pattern: anchored at the top when it has a `/`, else matching a name at any depth.
fn glob(pattern: &str) -> Result<Glob, globset::Error> {
    let anchored = pattern.trim_start_matches('/');
    let full = if pattern.contains('/') { anchored.to_owned() } else { format!("**/{pattern}") };
    GlobBuilder::new(&full).literal_separator(true).build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(include: &[&str], exclude: &[&str]) -> Filter {
        let owned = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect();
        FilterArgs { include: owned(include), exclude: owned(exclude) }.compile().unwrap()
    }

    #[test]
    fn names_match_at_any_depth_paths_from_the_top_and_exclude_wins() {
        let pdf = filter(&["*.pdf"], &[]);
        assert!(pdf.selects("a.pdf") && pdf.selects("x/y/a.pdf"));
        assert!(!pdf.selects("a.pdf.txt") && !pdf.selects("x/a.txt"));
        let raw = filter(&["raw/**"], &["**/tmp/**", "*.part"]);
        assert!(raw.selects("raw/a") && raw.selects("raw/b/c"));
        assert!(!raw.selects("x/raw/a"), "a pattern with `/` is anchored");
        assert!(!raw.selects("raw/tmp/x") && !raw.selects("raw/b/big.part"), "exclude wins");
        let one_level = filter(&["/2024/*/index.json"], &[]);
        assert!(one_level.selects("2024/01/index.json"));
        assert!(!one_level.selects("2024/01/02/index.json"), "`*` stays in its segment");
        let everything = filter(&[], &[]);
        assert!(everything.selects("anything/at/all"));
    }

    #[test]
    fn a_bad_pattern_is_a_usage_error_naming_it() {
        let err = FilterArgs { include: vec!["a[".into()], exclude: vec![] }.compile().unwrap_err();
        assert!(err.to_string().contains("--include \"a[\""), "{err}");
    }
}
