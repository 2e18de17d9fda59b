//! Turning byte offsets and key paths into `line:column` for error messages.

use super::plan::Segment;
use std::ops::Range;
use toml::de::{DeTable, DeValue};

/// A 1-based line and column (in characters) within a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineCol {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, counted in characters.
    pub column: usize,
}

/// The line and column of a byte offset in `text`.
pub fn line_col(text: &str, offset: usize) -> LineCol {
    let offset = offset.min(text.len());
    let before = &text[..floor_char_boundary(text, offset)];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    LineCol {
        line,
        column: before[line_start..].chars().count() + 1,
    }
}

fn floor_char_boundary(text: &str, mut offset: usize) -> usize {
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    offset
}

/// The span of the key (or array element) a path points at, or of the
/// deepest part of the path that exists when the rest is missing.
pub fn span_of(text: &str, path: &[Segment]) -> Option<Range<usize>> {
    let root = DeTable::parse(text).ok()?;
    let mut best: Option<Range<usize>> = None;
    let mut table: Option<&DeTable<'_>> = Some(root.get_ref());
    let mut array: Option<&[toml::Spanned<DeValue<'_>>]> = None;
    for segment in path {
        let value = match segment {
            Segment::Key(key) => {
                let (k, v) = table?.iter().find(|(k, _)| k.get_ref() == key)?;
                best = Some(k.span());
                v
            }
            Segment::Index(i) => {
                let v = array?.get(*i)?;
                best = Some(v.span());
                v
            }
        };
        table = None;
        array = None;
        match value.get_ref() {
            DeValue::Table(t) => table = Some(t),
            DeValue::Array(a) => array = Some(a),
            _ => {}
        }
    }
    best
}

/// The dotted key whose key or (scalar) value covers byte `offset`, e.g.
/// `faults[0].after`. Containers are searched whole, since the span of an
/// array of tables need not cover its elements.
pub fn key_at(text: &str, offset: usize) -> Option<String> {
    let root = DeTable::parse(text).ok()?;
    let mut best = None;
    walk_table(root.get_ref(), offset, "", &mut best);
    best
}

fn covers(r: Range<usize>, offset: usize) -> bool {
    r.start <= offset && offset < r.end.max(r.start + 1)
}

fn walk_table(table: &DeTable<'_>, offset: usize, prefix: &str, best: &mut Option<String>) {
    for (k, v) in table.iter() {
        let path = if prefix.is_empty() {
            k.get_ref().to_string()
        } else {
            format!("{prefix}.{}", k.get_ref())
        };
        let scalar = !matches!(v.get_ref(), DeValue::Table(_) | DeValue::Array(_));
        if covers(k.span(), offset) || (scalar && covers(v.span(), offset)) {
            *best = Some(path.clone());
        }
        walk_value(v.get_ref(), offset, &path, best);
    }
}

fn walk_value(value: &DeValue<'_>, offset: usize, path: &str, best: &mut Option<String>) {
    match value {
        DeValue::Table(t) => walk_table(t, offset, path, best),
        DeValue::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                let p = format!("{path}[{i}]");
                if !matches!(v.get_ref(), DeValue::Table(_) | DeValue::Array(_))
                    && covers(v.span(), offset)
                {
                    *best = Some(p.clone());
                }
                walk_value(v.get_ref(), offset, &p, best);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_become_lines_and_columns() {
        let text = "a = 1\nbé = 2\n";
        assert_eq!(line_col(text, 0), LineCol { line: 1, column: 1 });
        assert_eq!(line_col(text, 6), LineCol { line: 2, column: 1 });
        let eq = text.find("= 2").unwrap();
        assert_eq!(line_col(text, eq), LineCol { line: 2, column: 4 });
    }

    #[test]
    fn offsets_find_their_key() {
        let text = "messages = 5\n[[faults]]\nkind = \"x\"\n[[faults]]\nafter = \"three\"\n";
        let at = text.find("\"three").unwrap();
        assert_eq!(key_at(text, at).as_deref(), Some("faults[1].after"));
        assert_eq!(key_at(text, 2).as_deref(), Some("messages"));
    }

    #[test]
    fn paths_find_keys_inside_arrays_of_tables() {
        let text = "messages = 5\n[[faults]]\nkind = \"x\"\n[[faults]]\nafter = 3\n";
        let path = [
            Segment::Key("faults".into()),
            Segment::Index(1),
            Segment::Key("after".into()),
        ];
        let span = span_of(text, &path).unwrap();
        assert_eq!(line_col(text, span.start), LineCol { line: 5, column: 1 });
    }
}
