//! Durations as people write them in scenario files: "250ms", "5s", "2m".

use std::time::Duration;

/// Parses a duration with a unit (`ms`, `s` or `m`); fractions are allowed for `s` and `m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| {
            format!("`{text}` has no unit; expected a duration like \"500ms\", \"5s\" or \"2m\"")
        })?;
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().map_err(|_| {
        format!("`{text}` is not a duration; expected a duration like \"500ms\", \"5s\" or \"2m\"")
    })?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        _ => {
            return Err(format!(
                "`{text}` has an unknown unit `{unit}`; expected ms, s or m"
            ))
        }
    };
    if !seconds.is_finite() || seconds > 86_400.0 {
        return Err(format!(
            "`{text}` is out of range; expected at most 24 hours"
        ));
    }
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_units_people_write() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
    }

    #[test]
    fn rejects_what_is_not_a_duration() {
        assert!(parse_duration("5").unwrap_err().contains("no unit"));
        assert!(parse_duration("5h").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("..s").is_err());
        assert!(parse_duration("100000m")
            .unwrap_err()
            .contains("out of range"));
    }
}
