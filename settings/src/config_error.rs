//! figment's errors in words: each problem names the full dotted key, what is wrong with it
//! (a misspelt key gets the nearest known one), and the file or environment variable the value
//! came from. The result is core's [`Error::Config`]; core itself knows nothing of figment.

use promote_core::Error;

/// Where the value at the dotted `key` of `figment` came from, for a message: the file's path,
/// `environment variable PROMOTE_…`, or the layer's name; `None` when no layer sets it.
pub fn setting_origin(figment: &figment::Figment, key: &str) -> Option<String> {
    let meta = figment.find_metadata(key)?;
    Some(match &meta.source {
        Some(figment::Source::File(path)) => path.display().to_string(),
        _ => origin(meta, key),
    })
}

/// A configuration error ([`Error::Config`]) from figment, each problem naming the full key
/// (`prefix` + the path figment reports) and the file or variable it came from.
pub fn config_error(err: figment::Error, prefix: &str) -> Error {
    let messages: Vec<String> = err
        .into_iter()
        .map(|e| {
            let path = e.path.join(".");
            let sep = if prefix.is_empty() || path.is_empty() { "" } else { "." };
            let key = format!("{prefix}{sep}{path}");
            let what = describe(&e.kind, &key);
            match &e.metadata {
                Some(meta) => format!("{}: {what}", origin(meta, &key)),
                None => what,
            }
        })
        .collect();
    Error::config(messages.join("; "))
}

/// Where a value at `key` came from, for an error message: `promote.toml (TOML file)`,
/// `environment variable PROMOTE_BACKEND__ROOT`, or the layer's name.
pub(crate) fn origin(meta: &figment::Metadata, key: &str) -> String {
    match &meta.source {
        Some(source) => format!("{source} ({})", meta.name),
        None if meta.name.contains("environment") && !key.is_empty() => {
            let var = format!("PROMOTE_{}", key.replace('.', "__").to_uppercase());
            // An unknown table (`targts`) is set by a variable for one of its fields
            // (`PROMOTE_TARGTS__ARCHIVE__ROOT`): name that variable, the one the user wrote.
            let field = format!("{var}__");
            let written = std::env::var_os(&var).is_none().then(|| {
                std::env::vars_os()
                    .filter_map(|(name, _)| name.into_string().ok())
                    .filter(|name| name.to_uppercase().starts_with(&field))
                    .min()
            });
            format!("environment variable {}", written.flatten().unwrap_or(var))
        }
        None => meta.name.to_string(),
    }
}

/// One figment problem in words: the key, what was wrong, and for a misspelt key the nearest
/// known one.
pub(crate) fn describe(kind: &figment::error::Kind, key: &str) -> String {
    use figment::error::Kind;
    match kind {
        Kind::UnknownField(found, known) => {
            let nearest = known
                .iter()
                .map(|k| (strsim::damerau_levenshtein(found, k), *k))
                .filter(|(distance, _)| *distance <= 2)
                .min();
            let hint = nearest.map(|(_, k)| format!(" (did you mean `{k}`?)")).unwrap_or_default();
            format!("unknown key `{key}`{hint}; known keys here: {}", known.join(", "))
        }
        Kind::InvalidType(actual, expected) | Kind::InvalidValue(actual, expected) => format!(
            "`{key}` must be {}, not {}",
            crate::type_words::expected(expected),
            crate::type_words::actual(actual)
        ),
        Kind::MissingField(field) => {
            let sep = if key.is_empty() { "" } else { "." };
            format!("missing key `{key}{sep}{field}`")
        }
        other if key.is_empty() => other.to_string(),
        other => format!("`{key}`: {other}"),
    }
}
