//! The part of YAML that sae-lens's `pretrained_saes.yaml` and circuit-tracer's `config.yaml`
//! are written in, read into JSON
//! values: block mappings (`key: value`, `key:` + an indented block), block sequences
//! (`- item`, `- key: value` starting a mapping), plain and quoted scalars, comments. Flow
//! collections, anchors, tags and multi-line scalars are refused with an error naming the line.

use serde_json::{Map, Number, Value};

struct Line {
    /// 1-based line number in the file.
    number: usize,
    indent: usize,
    text: String,
}

/// Strips a comment: `#` at the start or after whitespace, outside quotes.
fn strip_comment(s: &str) -> &str {
    let (mut single, mut double) = (false, false);
    let mut prev = ' ';
    for (i, c) in s.char_indices() {
        match c {
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            '#' if !single && !double && prev.is_whitespace() => return &s[..i],
            _ => {}
        }
        prev = c;
    }
    s
}

/// Parses a document into a JSON value.
///
/// ```
/// let v = prism_core::parse_yaml("a:\n  repo_id: x/y\n  saes:\n  - id: one\n    path: p/1\n    l0: 12\n").unwrap();
/// assert_eq!(v["a"]["saes"][0]["path"], "p/1");
/// assert_eq!(v["a"]["saes"][0]["l0"], 12);
/// assert!(prism_core::parse_yaml("a: [1, 2]").is_err());
/// ```
pub fn parse_yaml(text: &str) -> Result<Value, String> {
    let mut lines = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        if raw.starts_with('\t') {
            return Err(format!("line {}: tabs are not YAML indentation", i + 1));
        }
        let body = strip_comment(raw).trim_end();
        let trimmed = body.trim_start();
        if trimmed.is_empty() || trimmed == "---" {
            continue;
        }
        lines.push(Line {
            number: i + 1,
            indent: body.len() - trimmed.len(),
            text: trimmed.to_string(),
        });
    }
    if lines.is_empty() {
        return Ok(Value::Null);
    }
    let mut at = 0;
    let indent = lines[0].indent;
    let v = block(&mut lines, &mut at, indent, 0)?;
    if let Some(l) = lines.get(at) {
        return Err(format!("line {}: unexpected indentation", l.number));
    }
    Ok(v)
}

fn is_item(text: &str) -> bool {
    text == "-" || text.starts_with("- ")
}

/// Splits `key: value` (or `key:`); `None` when the line is not a mapping entry.
fn split_entry(text: &str) -> Option<(&str, &str)> {
    if text.starts_with(['"', '\'']) {
        let q = text.chars().next()?;
        let end = text[1..].find(q)? + 1;
        let rest = &text[end + 1..];
        let value = rest.strip_prefix(':')?;
        if !(value.is_empty() || value.starts_with(' ')) {
            return None;
        }
        return Some((&text[1..end], value.trim()));
    }
    if let Some(k) = text.strip_suffix(':') {
        return Some((k, ""));
    }
    let i = text.find(": ")?;
    Some((&text[..i], text[i + 2..].trim()))
}

const MAX_DEPTH: usize = 64;

fn block(lines: &mut [Line], at: &mut usize, indent: usize, depth: usize) -> Result<Value, String> {
    if depth > MAX_DEPTH {
        return Err("nested too deeply".into());
    }
    let first = &lines[*at];
    if is_item(&first.text) {
        let mut items = Vec::new();
        while let Some(l) = lines.get(*at) {
            if l.indent != indent || !is_item(&l.text) {
                break;
            }
            let rest = l.text[1..].trim_start().to_string();
            if rest.is_empty() {
                *at += 1;
                match lines.get(*at) {
                    Some(n) if n.indent > indent => {
                        let child = n.indent;
                        items.push(block(lines, at, child, depth + 1)?);
                    }
                    _ => items.push(Value::Null),
                }
            } else if split_entry(&rest).is_some() {
                // `- key: value` starts a mapping indented where `key` is.
                let child = indent + (l.text.len() - rest.len());
                lines[*at].indent = child;
                lines[*at].text = rest;
                items.push(block(lines, at, child, depth + 1)?);
            } else {
                let number = l.number;
                items.push(scalar(&rest).map_err(|e| format!("line {number}: {e}"))?);
                *at += 1;
            }
        }
        return Ok(Value::Array(items));
    }
    let mut map = Map::new();
    while let Some(l) = lines.get(*at) {
        if l.indent < indent {
            break;
        }
        let number = l.number;
        if l.indent > indent {
            return Err(format!("line {number}: unexpected indentation"));
        }
        if is_item(&l.text) {
            break;
        }
        let (key, value) =
            split_entry(&l.text).ok_or_else(|| format!("line {number}: expected `key: value`"))?;
        let (key, value) = (key.to_string(), value.to_string());
        *at += 1;
        let v = if value.is_empty() {
            match lines.get(*at) {
                Some(n) if n.indent > indent => {
                    let child = n.indent;
                    block(lines, at, child, depth + 1)?
                }
                // A sequence may sit at its key's own indentation.
                Some(n) if n.indent == indent && is_item(&n.text) => {
                    block(lines, at, indent, depth + 1)?
                }
                _ => Value::Null,
            }
        } else {
            scalar(&value).map_err(|e| format!("line {number}: {e}"))?
        };
        if map.insert(key.clone(), v).is_some() {
            return Err(format!("line {number}: key `{key}` repeated"));
        }
    }
    Ok(Value::Object(map))
}

/// A scalar: quoted string, null, boolean, integer, float or plain string.
fn scalar(s: &str) -> Result<Value, String> {
    if s.starts_with(['[', '{']) {
        return Err("flow collections are not supported".into());
    }
    if s.starts_with(['&', '*', '!', '|', '>']) {
        return Err(format!(
            "`{}` (anchors, tags, block scalars) is not supported",
            &s[..1]
        ));
    }
    if let Some(inner) = s.strip_prefix('"') {
        let inner = inner.strip_suffix('"').ok_or("unterminated string")?;
        return Ok(Value::String(
            inner.replace("\\\"", "\"").replace("\\\\", "\\"),
        ));
    }
    if let Some(inner) = s.strip_prefix('\'') {
        let inner = inner.strip_suffix('\'').ok_or("unterminated string")?;
        return Ok(Value::String(inner.replace("''", "'")));
    }
    Ok(match s {
        "null" | "Null" | "NULL" | "~" => Value::Null,
        "true" | "True" | "TRUE" => Value::Bool(true),
        "false" | "False" | "FALSE" => Value::Bool(false),
        _ => {
            let digits = s.strip_prefix(['-', '+']).unwrap_or(s);
            if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
                match s.parse::<i64>() {
                    Ok(i) => Value::Number(i.into()),
                    Err(_) => Value::String(s.to_string()),
                }
            } else if digits
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_digit() || b == b'.')
                && let Ok(f) = s.parse::<f64>()
                && let Some(n) = Number::from_f64(f)
            {
                Value::Number(n)
            } else {
                Value::String(s.to_string())
            }
        }
    })
}
