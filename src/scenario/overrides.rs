//! `--set key=value` overrides, applied on top of a scenario file.
//!
//! A value is read as a TOML value when it parses as one (`--set messages=500`,
//! `--set durable=false`) and as a string otherwise (`--set guarantee=exactly-once`).

use toml::Table;

/// One `--set key=value` from the command line.
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    /// The argument as given, for error messages.
    pub raw: String,
    /// The dotted key, e.g. `expect.max_lost`.
    pub key: String,
    /// The value as a one-key TOML table ready to merge.
    pub table: Table,
}

impl Override {
    /// Parses `key=value`.
    pub fn parse(raw: &str) -> Result<Override, String> {
        let (key, value) = raw
            .split_once('=')
            .ok_or_else(|| format!("--set {raw}: expected key=value"))?;
        let key = key.trim();
        let valid_key = !key.is_empty()
            && key.split('.').all(|part| {
                !part.is_empty()
                    && part
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            });
        if !valid_key {
            return Err(format!("--set {raw}: `{key}` is not a key; expected a name like `messages` or `expect.max_lost`"));
        }
        let value = value.trim();
        let table = toml::from_str::<Table>(&format!("{key} = {value}"))
            .or_else(|_| {
                toml::from_str::<Table>(&format!(
                    "{key} = {}",
                    toml::Value::String(value.to_string())
                ))
            })
            .map_err(|e| format!("--set {raw}: {}", e.message()))?;
        Ok(Override {
            raw: raw.to_string(),
            key: key.to_string(),
            table,
        })
    }

    /// Whether this override set the key at `dotted` or one inside it.
    pub fn covers(&self, dotted: &str) -> bool {
        dotted == self.key
            || dotted.starts_with(&format!("{}.", self.key))
            || dotted.starts_with(&format!("{}[", self.key))
    }
}

/// Merges `top` into `base`: tables merge key by key, anything else is replaced.
pub fn merge(base: &mut Table, top: &Table) {
    for (key, value) in top {
        match (base.get_mut(key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(t)) => merge(b, t),
            _ => {
                base.insert(key.clone(), value.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_toml_when_they_parse_and_strings_otherwise() {
        let o = Override::parse("messages=500").unwrap();
        assert_eq!(o.table["messages"].as_integer(), Some(500));
        let o = Override::parse("guarantee=exactly-once").unwrap();
        assert_eq!(o.table["guarantee"].as_str(), Some("exactly-once"));
        let o = Override::parse("expect.max_lost=0").unwrap();
        assert_eq!(o.table["expect"]["max_lost"].as_integer(), Some(0));
        assert!(o.covers("expect.max_lost"));
        assert!(!o.covers("expect.min_lost"));
    }

    #[test]
    fn malformed_overrides_are_rejected() {
        assert!(Override::parse("messages")
            .unwrap_err()
            .contains("key=value"));
        assert!(Override::parse("=5").unwrap_err().contains("not a key"));
    }

    #[test]
    fn merging_keeps_sibling_keys() {
        let mut base: Table = toml::from_str("a = 1\n[expect]\nmax_lost = 0\n").unwrap();
        let top: Table = toml::from_str("expect.min_duplicates = 1").unwrap();
        merge(&mut base, &top);
        assert_eq!(base["expect"]["max_lost"].as_integer(), Some(0));
        assert_eq!(base["expect"]["min_duplicates"].as_integer(), Some(1));
    }
}
