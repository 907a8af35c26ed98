//! Labelled statements in geometry-of-truth's CSV layout: `statement,label,` then any columns
//! (`city`, `country`, … or `n1`, `n2`, …), one statement per row, label `1` (true) or `0`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use prism_core::{PrismError, Result, atomic_write};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use serde::Serialize;

/// One labelled statement and its extra columns (in the dataset's column order).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Statement {
    /// The text the model reads.
    pub text: String,
    /// Whether the statement is true (the probe's target).
    pub label: bool,
    /// Values of [`LabelledDataset::columns`], in order.
    pub extra: Vec<String>,
}

/// A labelled dataset: statements, labels and named extra columns.
///
/// ```
/// use prism_probe::LabelledDataset;
/// let csv = "statement,label,city\nThe city of Paris is in France.,1,Paris\nThe city of Paris is in Peru.,0,Paris\n";
/// let d = LabelledDataset::from_csv_str("cities", csv)?;
/// assert_eq!(d.len(), 2);
/// assert_eq!(d.labels(), vec![true, false]);
/// assert_eq!(d.column("city")?, vec!["Paris", "Paris"]);
/// // A label that is not 0/1 is an error naming the line.
/// let bad = LabelledDataset::from_csv_str("bad", "statement,label\nx,maybe\n").unwrap_err();
/// assert!(bad.to_string().contains(":2:"));
/// # Ok::<(), prism_core::PrismError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelledDataset {
    /// A short name (the file stem), used in tables and plots.
    pub name: String,
    /// Names of the extra columns after `statement` and `label`.
    pub columns: Vec<String>,
    /// The rows.
    pub rows: Vec<Statement>,
}

/// Row indices of a train/test split.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Split {
    /// Training rows.
    pub train: Vec<usize>,
    /// Held-out rows.
    pub test: Vec<usize>,
}

impl LabelledDataset {
    /// A dataset from rows (every row must have one value per column).
    pub fn new(
        name: impl Into<String>,
        columns: Vec<String>,
        rows: Vec<Statement>,
    ) -> Result<Self> {
        if let Some(bad) = rows.iter().position(|r| r.extra.len() != columns.len()) {
            return Err(PrismError::InvalidInput(format!(
                "row {bad} has {} extra values for {} columns",
                rows[bad].extra.len(),
                columns.len()
            )));
        }
        Ok(Self {
            name: name.into(),
            columns,
            rows,
        })
    }

    /// Reads a CSV file; the dataset is named after the file stem.
    pub fn read_csv(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| PrismError::io(path, e))?;
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "dataset".into());
        Self::parse(&name, &text, path)
    }

    /// Parses CSV text (errors name the dataset as the path).
    pub fn from_csv_str(name: &str, text: &str) -> Result<Self> {
        Self::parse(name, text, Path::new(name))
    }

    fn parse(name: &str, text: &str, path: &Path) -> Result<Self> {
        let err = |line: usize, message: String| PrismError::Dataset {
            path: PathBuf::from(path),
            line,
            message,
        };
        let mut records = csv_records(text)
            .map_err(|(line, m)| err(line, m))?
            .into_iter();
        let (_, header) = records
            .next()
            .filter(|(_, h)| h.iter().any(|f| !f.trim().is_empty()))
            .ok_or_else(|| {
                err(
                    1,
                    "empty file: expected a header `statement,label,…`".into(),
                )
            })?;
        let find = |want: &str| header.iter().position(|h| h.trim() == want);
        let statement = find("statement")
            .ok_or_else(|| err(1, "no `statement` column in the header".into()))?;
        let label =
            find("label").ok_or_else(|| err(1, "no `label` column in the header".into()))?;
        // Extra columns: every named one but statement and label (geometry-of-truth's files
        // may start with an unnamed index column, which is skipped).
        let extra_idx: Vec<usize> = (0..header.len())
            .filter(|&i| i != statement && i != label && !header[i].trim().is_empty())
            .collect();
        let columns: Vec<String> = extra_idx.iter().map(|&i| header[i].trim().into()).collect();
        let mut rows = Vec::new();
        for (line, record) in records {
            if record.len() == 1 && record[0].is_empty() {
                continue; // a blank line
            }
            if record.len() != header.len() {
                return Err(err(
                    line,
                    format!("{} fields, the header has {}", record.len(), header.len()),
                ));
            }
            let label = match record[label].trim() {
                "1" | "1.0" | "True" | "true" => true,
                "0" | "0.0" | "False" | "false" => false,
                other => {
                    return Err(err(line, format!("label `{other}` is not 0 or 1")));
                }
            };
            let text = record[statement].clone();
            if text.trim().is_empty() {
                return Err(err(line, "empty statement".into()));
            }
            rows.push(Statement {
                text,
                label,
                extra: extra_idx.iter().map(|&i| record[i].clone()).collect(),
            });
        }
        if rows.is_empty() {
            return Err(err(2, "no statements after the header".into()));
        }
        Ok(Self {
            name: name.into(),
            columns,
            rows,
        })
    }

    /// The CSV text (`statement,label,` then the extra columns; fields quoted where needed).
    pub fn to_csv_string(&self) -> Result<String> {
        let mut out = String::new();
        let mut line = |fields: &mut dyn Iterator<Item = &str>| {
            let cells: Vec<String> = fields.map(csv_field).collect();
            out.push_str(&cells.join(","));
            out.push('\n');
        };
        let header = ["statement", "label"]
            .into_iter()
            .chain(self.columns.iter().map(String::as_str));
        line(&mut header.into_iter());
        for r in &self.rows {
            let label = if r.label { "1" } else { "0" };
            let mut fields = [r.text.as_str(), label]
                .into_iter()
                .chain(r.extra.iter().map(String::as_str));
            line(&mut fields);
        }
        Ok(out)
    }

    /// Writes the CSV atomically.
    pub fn write_csv(&self, path: &Path) -> Result<()> {
        atomic_write(path, self.to_csv_string()?.as_bytes())
    }

    /// Number of statements.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether there are no statements.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The statements' texts.
    pub fn texts(&self) -> Vec<&str> {
        self.rows.iter().map(|r| r.text.as_str()).collect()
    }

    /// The labels.
    pub fn labels(&self) -> Vec<bool> {
        self.rows.iter().map(|r| r.label).collect()
    }

    /// The values of one extra column, or an error listing the columns there are.
    pub fn column(&self, name: &str) -> Result<Vec<&str>> {
        let i = self.columns.iter().position(|c| c == name).ok_or_else(|| {
            PrismError::InvalidInput(format!(
                "dataset `{}` has no column `{name}` (it has: {})",
                self.name,
                self.columns.join(", ")
            ))
        })?;
        Ok(self.rows.iter().map(|r| r.extra[i].as_str()).collect())
    }

    /// The rows at `idx`, in that order, as a new dataset named `name`.
    pub fn subset(&self, name: impl Into<String>, idx: &[usize]) -> Self {
        Self {
            name: name.into(),
            columns: self.columns.clone(),
            rows: idx.iter().map(|&i| self.rows[i].clone()).collect(),
        }
    }

    /// A seeded train/test split with about `test_fraction` of the rows held out. With
    /// `group` (a column name) every value of that column lands wholly on one side — split by
    /// city, so no city is in both — otherwise rows are split one by one.
    ///
    /// ```
    /// use prism_probe::LabelledDataset;
    /// let csv = "statement,label,city\na,1,A\nb,0,A\nc,1,B\nd,0,B\ne,1,C\nf,0,C\n";
    /// let d = LabelledDataset::from_csv_str("t", csv)?;
    /// let s = d.split(0.34, Some("city"), 7)?;
    /// let city = d.column("city")?;
    /// assert!(s.train.iter().all(|&i| s.test.iter().all(|&j| city[i] != city[j])));
    /// assert_eq!(s.train.len() + s.test.len(), 6);
    /// # Ok::<(), prism_core::PrismError>(())
    /// ```
    pub fn split(&self, test_fraction: f64, group: Option<&str>, seed: u64) -> Result<Split> {
        if !(test_fraction > 0.0 && test_fraction < 1.0) {
            return Err(PrismError::InvalidInput(format!(
                "test fraction {test_fraction} must be in (0, 1)"
            )));
        }
        let mut parts = self.partition(&[1.0 - test_fraction, test_fraction], group, seed)?;
        let test = parts.pop().unwrap_or_default();
        let train = parts.pop().unwrap_or_default();
        Ok(Split { train, test })
    }

    /// Rows in seeded parts of about the given shares (summing to 1), whole groups at a time
    /// when `group` names a column. Groups are shuffled and dealt out in order: each part takes
    /// groups until it holds its share of the rows; every part gets at least one group.
    pub fn partition(
        &self,
        shares: &[f64],
        group: Option<&str>,
        seed: u64,
    ) -> Result<Vec<Vec<usize>>> {
        let keys: Vec<String> = match group {
            Some(c) => self.column(c)?.into_iter().map(str::to_string).collect(),
            None => (0..self.len()).map(|i| i.to_string()).collect(),
        };
        let mut groups: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, k) in keys.iter().enumerate() {
            groups.entry(k.as_str()).or_default().push(i);
        }
        let mut order: Vec<&str> = groups.keys().copied().collect();
        if order.len() < shares.len() {
            return Err(PrismError::InvalidInput(format!(
                "dataset `{}` has {} group(s): {} parts need at least as many",
                self.name,
                order.len(),
                shares.len()
            )));
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        order.shuffle(&mut rng);
        let total = self.len() as f64;
        let target = |k: usize| (shares[..=k].iter().sum::<f64>() * total).round() as usize;
        let n_parts = shares.len();
        let mut parts: Vec<Vec<usize>> = vec![Vec::new(); n_parts];
        let (mut k, mut dealt) = (0, 0);
        for (g, key) in order.iter().enumerate() {
            let groups_left = order.len() - g;
            // Move on when this part is full, or when the groups left are just enough to give
            // every later part one.
            while k + 1 < n_parts
                && !parts[k].is_empty()
                && (dealt >= target(k) || groups_left < n_parts - k)
            {
                k += 1;
            }
            parts[k].extend_from_slice(&groups[key]);
            dealt += groups[key].len();
        }
        for p in &mut parts {
            p.sort_unstable();
        }
        Ok(parts)
    }
}

/// A field quoted when it holds a comma, quote or line break (RFC 4180).
fn csv_field(field: &str) -> String {
    if field.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_string()
    }
}

/// A CSV record: the line it starts on and its fields.
type CsvRecord = (usize, Vec<String>);

/// The records of RFC 4180 CSV text, each with the line it starts on (1-based); quoted fields
/// may hold commas, doubled quotes and line breaks. An unterminated quote is an error naming
/// the line where it opened.
fn csv_records(text: &str) -> std::result::Result<Vec<CsvRecord>, (usize, String)> {
    let mut records = Vec::new();
    let (mut record, mut field) = (Vec::new(), String::new());
    let (mut line, mut start, mut quoted_at) = (1usize, 1usize, None::<usize>);
    let mut chars = text.chars().peekable();
    let mut any = false;
    while let Some(c) = chars.next() {
        any = true;
        if quoted_at.is_some() {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => quoted_at = None,
                '\n' => {
                    line += 1;
                    field.push(c);
                }
                _ => field.push(c),
            }
            continue;
        }
        match c {
            '"' if field.is_empty() => quoted_at = Some(line),
            ',' => record.push(std::mem::take(&mut field)),
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                record.push(std::mem::take(&mut field));
                records.push((start, std::mem::take(&mut record)));
                line += 1;
                start = line;
                any = false;
            }
            _ => field.push(c),
        }
    }
    if let Some(opened) = quoted_at {
        return Err((opened, "a quoted field is never closed".into()));
    }
    if any {
        record.push(field);
        records.push((start, record));
    }
    Ok(records)
}
