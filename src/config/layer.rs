//! Layered settings, shared by the hub's and the agent's configuration. Layers, later wins:
//! built-in defaults, then a TOML file, then the environment variables of one prefix (typed
//! after each key's default). Every error names the key, and the variable that set it.

use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use toml::{Table, Value};

/// Why the configuration could not be loaded. The message always names the key or file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("unknown environment variable {var}: no config key is called that")]
    UnknownEnv { var: String },
    #[error("config key `{key}`{origin}: {message}")]
    Invalid {
        key: String,
        origin: String,
        message: String,
    },
}

/// The environment variables one kind of configuration reads: those with `prefix`, except
/// the ones in `ignore` (exact names, or prefixes when they end in `_`).
pub(crate) struct EnvScope {
    pub(crate) prefix: &'static str,
    pub(crate) ignore: &'static [&'static str],
}

impl EnvScope {
    fn wants(&self, var: &str) -> bool {
        var.starts_with(self.prefix)
            && !self.ignore.iter().any(|i| {
                if i.ends_with('_') {
                    var.starts_with(i)
                } else {
                    var == *i
                }
            })
    }

    /// The variable that sets a dotted key: `log.format` → `<prefix>LOG_FORMAT`.
    pub(crate) fn var_for(&self, key: &str) -> String {
        format!(
            "{}{}",
            self.prefix,
            key.replace('.', "_").to_ascii_uppercase()
        )
    }
}

/// Defaults, then the file at `path`, then `scope`'s environment variables (typed after each
/// key's default), deserialised into `T`. Also returns which variable set which key, so
/// later checks can name it. Every error names the key.
pub(crate) fn layered<T>(
    path: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
    scope: &EnvScope,
) -> Result<(T, BTreeMap<String, String>), ConfigError>
where
    T: Serialize + serde::de::DeserializeOwned + Default,
{
    let mut table = match path {
        Some(path) => read_file(path)?,
        None => Table::new(),
    };
    let from_env = apply_env::<T>(&mut table, env, scope)?;
    let config: T = serde_path_to_error::deserialize(Value::Table(table)).map_err(|e| {
        let key = e.path().to_string();
        ConfigError::Invalid {
            origin: origin(&from_env, &key),
            key,
            message: e.into_inner().message().to_string(),
        }
    })?;
    Ok((config, from_env))
}

pub(crate) fn read_file(path: &Path) -> Result<Table, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.into(),
        source,
    })?;
    text.parse::<Table>().map_err(|e| ConfigError::Syntax {
        path: path.into(),
        message: e.to_string(),
    })
}

/// " (from VAR)" when an environment variable set `key`.
pub(crate) fn origin(from_env: &BTreeMap<String, String>, key: &str) -> String {
    from_env
        .get(key)
        .map(|var| format!(" (from {var})"))
        .unwrap_or_default()
}

/// Every leaf key of `T`'s defaults, dotted (`log.format`), with its default value.
pub(crate) fn default_keys<T: Serialize + Default>() -> Vec<(String, Value)> {
    fn walk(prefix: &str, table: &Table, out: &mut Vec<(String, Value)>) {
        for (k, v) in table {
            let key = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            match v {
                Value::Table(t) => walk(&key, t, out),
                other => out.push((key, other.clone())),
            }
        }
    }
    let defaults = Table::try_from(T::default()).expect("defaults serialize to TOML");
    let mut out = Vec::new();
    walk("", &defaults, &mut out);
    out
}

/// Overlays `scope`'s variables onto `table`, typed after each key's default in `T`.
/// Returns which key each variable set, so errors can name the variable.
fn apply_env<T: Serialize + Default>(
    table: &mut Table,
    env: impl IntoIterator<Item = (String, String)>,
    scope: &EnvScope,
) -> Result<BTreeMap<String, String>, ConfigError> {
    let keys: BTreeMap<String, (String, Value)> = default_keys::<T>()
        .into_iter()
        .map(|(key, default)| (scope.var_for(&key), (key, default)))
        .collect();
    let mut applied = BTreeMap::new();
    for (var, raw) in env {
        if !scope.wants(&var) {
            continue;
        }
        let Some((key, default)) = keys.get(&var) else {
            return Err(ConfigError::UnknownEnv { var });
        };
        let invalid = |message: String| ConfigError::Invalid {
            key: key.clone(),
            origin: format!(" (from {var})"),
            message,
        };
        let value = match default {
            Value::Integer(_) => Value::Integer(
                raw.trim()
                    .parse()
                    .map_err(|_| invalid(format!("expected a whole number, got {raw:?}")))?,
            ),
            Value::Boolean(_) => Value::Boolean(
                raw.trim()
                    .parse()
                    .map_err(|_| invalid(format!("expected true or false, got {raw:?}")))?,
            ),
            // A list of numbers (`vhosts.user_ports`) stays numbers.
            Value::Array(items) if matches!(items.first(), Some(Value::Integer(_))) => {
                Value::Array(
                    raw.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(|s| {
                            s.parse()
                                .map(Value::Integer)
                                .map_err(|_| invalid(format!("expected whole numbers, got {s:?}")))
                        })
                        .collect::<Result<_, _>>()?,
                )
            }
            Value::Array(_) => Value::Array(
                raw.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| Value::String(s.to_string()))
                    .collect(),
            ),
            _ => Value::String(raw),
        };
        set_path(table, key, value).map_err(invalid)?;
        applied.insert(key.clone(), var);
    }
    Ok(applied)
}

fn set_path(table: &mut Table, key: &str, value: Value) -> Result<(), String> {
    let mut parts: Vec<&str> = key.split('.').collect();
    let last = parts.pop().expect("keys are never empty");
    let mut current = table;
    for part in parts {
        current = current
            .entry(part)
            .or_insert_with(|| Value::Table(Table::new()))
            .as_table_mut()
            .ok_or_else(|| format!("`{part}` in the config file is not a table"))?;
    }
    current.insert(last.to_string(), value);
    Ok(())
}

/// What the hub's and the agent's configuration tests both need: an environment as pairs,
/// and a config file with the given text.
#[cfg(test)]
pub(crate) mod testing {
    pub(crate) fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    pub(crate) fn file(text: &str) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), text).unwrap();
        f
    }
}
