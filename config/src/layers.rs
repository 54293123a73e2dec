//! Layering: defaults < TOML file < `TRIBUTARY_*` environment < command-line flags.
//! Overrides are applied to the TOML tree before it is deserialized, so one set of
//! serde rules (and one set of error messages) covers every source.

use std::path::Path;

use toml::{Table, Value};

use crate::{validate, Config, ConfigError};

/// Where configuration comes from, beside the defaults.
#[derive(Debug, Default, Clone)]
pub struct Sources<'a> {
    /// Contents of the TOML file, with its name for messages.
    pub file: Option<(&'a Path, String)>,
    /// Environment variables (all of them; only `TRIBUTARY_*` are read).
    pub env: Vec<(String, String)>,
    /// Flags as (dotted key, value).
    pub flags: Vec<(&'static str, String)>,
}

/// Environment variables with the `TRIBUTARY_` prefix that are not config keys.
const ENV_NOT_KEYS: &[&str] = &["TRIBUTARY_CONFIG"];

/// Builds the configuration from all sources and validates it.
pub fn load(sources: Sources<'_>) -> Result<Config, ConfigError> {
    let mut problems = Vec::new();
    let mut tree = match &sources.file {
        Some((path, text)) => match text.parse::<Table>() {
            Ok(t) => t,
            Err(e) => {
                return Err(ConfigError { problems: vec![format!("{}: {}", path.display(), e.message())] });
            }
        },
        None => Table::new(),
    };
    let defaults = Value::try_from(Config::default()).expect("invariant: the default config serializes");
    let mut keys = Vec::new();
    leaf_keys(&defaults, String::new(), &mut keys);

    for (name, raw) in &sources.env {
        let Some(rest) = name.strip_prefix("TRIBUTARY_") else {
            continue;
        };
        if ENV_NOT_KEYS.contains(&name.as_str()) {
            continue;
        }
        match keys.iter().find(|(k, _)| k.replace('.', "_").to_uppercase() == rest) {
            Some((key, default)) => set(&mut tree, key, default, raw, name, &mut problems),
            None => problems.push(format!("{name}: not a configuration key")),
        }
    }
    for (key, raw) in &sources.flags {
        let default = keys.iter().find(|(k, _)| k == key).map(|(_, d)| d.clone());
        let default = default.expect("invariant: every flag names a configuration key");
        set(&mut tree, key, &default, raw, &format!("--{}", key.replace('_', "-")), &mut problems);
    }
    if !problems.is_empty() {
        return Err(ConfigError { problems });
    }
    // serde_path_to_error keeps the key path that deserializing a tree loses.
    let config: Config = serde_path_to_error::deserialize(Value::Table(tree))
        .map_err(|e| ConfigError { problems: vec![format!("{}: {}", e.path(), e.inner().message())] })?;
    validate::check(&config)?;
    Ok(config)
}

fn leaf_keys(v: &Value, prefix: String, out: &mut Vec<(String, Value)>) {
    match v {
        Value::Table(t) => {
            for (k, v) in t {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                leaf_keys(v, key, out);
            }
        }
        other => out.push((prefix, other.clone())),
    }
}

/// Parses `raw` as the type of the key's default and sets it in the tree.
fn set(tree: &mut Table, key: &str, default: &Value, raw: &str, source: &str, problems: &mut Vec<String>) {
    let value = match default {
        Value::Integer(_) => raw.trim().parse::<i64>().map(Value::Integer).map_err(|_| "an integer"),
        Value::Boolean(_) => raw.trim().parse::<bool>().map(Value::Boolean).map_err(|_| "true or false"),
        Value::Float(_) => raw.trim().parse::<f64>().map(Value::Float).map_err(|_| "a number"),
        // Lists of strings come comma-separated: TRIBUTARY_GROUPS_CONSUMER_ASSIGNORS=range,uniform
        Value::Array(_) => Ok(Value::Array(
            raw.split(',').map(str::trim).filter(|s| !s.is_empty()).map(|s| Value::String(s.into())).collect(),
        )),
        _ => Ok(Value::String(raw.to_string())),
    };
    let value = match value {
        Ok(v) => v,
        Err(expected) => {
            problems.push(format!("{key} (from {source}): {raw:?} is not {expected}"));
            return;
        }
    };
    let mut parts: Vec<&str> = key.split('.').collect();
    let last = parts.pop().expect("invariant: keys are not empty");
    let mut table = tree;
    for part in parts {
        let entry = table.entry(part.to_string()).or_insert_with(|| Value::Table(Table::new()));
        if !entry.is_table() {
            *entry = Value::Table(Table::new());
        }
        table = entry.as_table_mut().expect("invariant: just made a table");
    }
    table.insert(last.to_string(), value);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Durability;

    fn file(text: &str) -> Option<(&'static Path, String)> {
        Some((Path::new("tributary.toml"), text.to_string()))
    }

    #[test]
    fn defaults_without_any_source() {
        assert_eq!(load(Sources::default()).unwrap(), Config::default());
    }

    #[test]
    fn flags_beat_env_beat_file() {
        let cfg = load(Sources {
            file: file("listen = \"127.0.0.1:1\"\n[journal]\ndurability = \"interval\"\nfsync_interval_ms = 7\n"),
            env: vec![
                ("TRIBUTARY_LISTEN".into(), "127.0.0.1:2".into()),
                ("TRIBUTARY_JOURNAL_FSYNC_INTERVAL_MS".into(), "9".into()),
                ("PATH".into(), "/bin".into()),
            ],
            flags: vec![("listen", "127.0.0.1:3".into())],
        })
        .unwrap();
        assert_eq!(cfg.listen, "127.0.0.1:3");
        assert_eq!(cfg.journal.fsync_interval_ms, 9);
        assert_eq!(cfg.journal.durability, Durability::Interval);
    }

    #[test]
    fn lists_come_comma_separated_from_the_environment() {
        let cfg = load(Sources {
            env: vec![("TRIBUTARY_GROUPS_CONSUMER_ASSIGNORS".into(), "range, uniform".into())],
            ..Sources::default()
        })
        .unwrap();
        assert_eq!(cfg.groups.consumer_assignors, vec!["range".to_string(), "uniform".to_string()]);
    }

    #[test]
    fn unknown_keys_are_refused_with_their_name() {
        let err = load(Sources { file: file("[journal]\nfsync = true\n"), ..Default::default() }).unwrap_err();
        assert!(err.to_string().contains("fsync"), "{err}");
        let err = load(Sources { env: vec![("TRIBUTARY_NOPE".into(), "1".into())], ..Default::default() }).unwrap_err();
        assert!(err.to_string().contains("TRIBUTARY_NOPE"), "{err}");
    }

    #[test]
    fn a_bad_value_in_the_file_names_its_key() {
        let err =
            load(Sources { file: file("[journal]\ndurability = \"sometimes\"\n"), ..Default::default() }).unwrap_err();
        assert!(err.to_string().contains("journal.durability"), "{err}");
        let err = load(Sources { file: file("node_id = \"zero\"\n"), ..Default::default() }).unwrap_err();
        assert!(err.to_string().contains("node_id"), "{err}");
    }

    #[test]
    fn env_values_of_the_wrong_type_name_the_key() {
        let err = load(Sources {
            env: vec![("TRIBUTARY_TOPICS_NUM_PARTITIONS".into(), "many".into())],
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("topics.num_partitions"), "{err}");
    }

    #[test]
    fn example_file_parses_to_the_defaults() {
        let text = include_str!("../../tributary.toml");
        assert_eq!(load(Sources { file: file(text), ..Default::default() }).unwrap(), Config::default());
    }
}
