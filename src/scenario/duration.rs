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

/// Parses an age, e.g. for `dlab clean --older-than`: a whole or fractional
/// number with a unit `s`, `m`, `h` or `d` (days), up to ten years.
pub fn parse_age(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let expected = "expected an age like \"90s\", \"30m\", \"12h\" or \"7d\"";
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| format!("`{text}` has no unit; {expected}"))?;
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("`{text}` is not an age; {expected}"))?;
    let seconds = match unit {
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        "d" => value * 86_400.0,
        _ => return Err(format!("`{text}` has an unknown unit `{unit}`; {expected}")),
    };
    if !seconds.is_finite() || seconds > 10.0 * 366.0 * 86_400.0 {
        return Err(format!(
            "`{text}` is out of range; expected at most ten years"
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

    #[test]
    fn ages_take_hours_and_days() {
        assert_eq!(parse_age("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_age("12h"), Ok(Duration::from_secs(12 * 3600)));
        assert_eq!(parse_age("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_age("0.5d"), Ok(Duration::from_secs(43_200)));
        assert!(parse_age("7").unwrap_err().contains("no unit"));
        assert!(parse_age("7w").unwrap_err().contains("unknown unit"));
        assert!(parse_age("99999d").unwrap_err().contains("out of range"));
    }
}
