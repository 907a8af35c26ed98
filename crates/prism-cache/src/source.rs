//! Text sources: plain text, `.jsonl`, `.jsonl.zst`, and directories of those, read lazily.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use prism_core::{PrismError, Result};

/// What kind of file a corpus path is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Text,
    Jsonl,
    JsonlZst,
}

fn format_of(path: &Path) -> Option<Format> {
    let name = path.file_name()?.to_string_lossy().to_ascii_lowercase();
    if name.ends_with(".jsonl.zst") {
        Some(Format::JsonlZst)
    } else if name.ends_with(".jsonl") {
        Some(Format::Jsonl)
    } else if [".txt", ".rst", ".md", ".text"]
        .iter()
        .any(|e| name.ends_with(e))
    {
        Some(Format::Text)
    } else {
        None
    }
}

/// A corpus: an ordered list of files, read one piece at a time (a corpus larger than memory
/// works: at most one line or one text chunk is held at once).
///
/// - plain text (`.txt`, `.rst`, `.md`): each file is one document, delivered in chunks of
///   whole lines;
/// - `.jsonl` / `.jsonl.zst`: one document per line, its text in the field `text_field`.
///
/// Lines that are not valid UTF-8, JSON lines that do not parse, lack the field or exceed
/// 16 MiB, and empty files are *skipped and counted* in [`SkipCounts`]; a corpus that yields no
/// text at all is an error. A text line longer than 16 MiB is read in parts.
#[derive(Clone, Debug)]
pub struct Corpus {
    /// The path given (file or directory).
    pub root: PathBuf,
    /// The files, in the order they are read (sorted).
    pub files: Vec<PathBuf>,
    /// The JSON field holding the text.
    pub text_field: String,
}

/// Counts of input that was skipped rather than read.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SkipCounts {
    /// Lines that were not valid UTF-8.
    pub invalid_utf8: u64,
    /// JSON lines that did not parse.
    pub invalid_json: u64,
    /// JSON lines without the text field (or whose field is not a string).
    pub missing_field: u64,
    /// Files with no content.
    pub empty_files: u64,
    /// JSON lines longer than 16 MiB.
    #[serde(default)]
    pub too_long: u64,
}

/// One piece of text and whether it begins a new document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Piece {
    /// The text.
    pub text: String,
    /// True for the first piece of a document.
    pub starts_document: bool,
}

impl Corpus {
    /// Lists the readable files under `path` (a file or a directory, searched recursively).
    pub fn open(path: &Path, text_field: &str) -> Result<Self> {
        let meta = std::fs::metadata(path).map_err(|e| PrismError::io(path, e))?;
        let mut files = Vec::new();
        if meta.is_dir() {
            collect(path, &mut files)?;
            files.sort();
            if files.is_empty() {
                return Err(PrismError::InvalidInput(format!(
                    "{}: no .txt, .rst, .md, .jsonl or .jsonl.zst files in this directory",
                    path.display()
                )));
            }
        } else {
            if format_of(path).is_none() {
                return Err(PrismError::InvalidInput(format!(
                    "{}: unknown corpus format (expected .txt, .rst, .md, .jsonl or .jsonl.zst)",
                    path.display()
                )));
            }
            files.push(path.to_path_buf());
        }
        Ok(Self {
            root: path.to_path_buf(),
            files,
            text_field: text_field.to_string(),
        })
    }

    /// Reads the corpus lazily, piece by piece.
    pub fn pieces(&self) -> Pieces<'_> {
        Pieces {
            corpus: self,
            file: 0,
            reader: None,
            skipped: SkipCounts::default(),
            yielded: 0,
        }
    }
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).map_err(|e| PrismError::io(dir, e))? {
        let p = entry.map_err(|e| PrismError::io(dir, e))?.path();
        if p.is_dir() {
            collect(&p, out)?;
        } else if format_of(&p).is_some() {
            out.push(p);
        }
    }
    Ok(())
}

/// Largest chunk of a text file delivered at once (whole lines; a longer line is one chunk, up
/// to [`MAX_LINE`]).
const TEXT_CHUNK: usize = 64 * 1024;

/// The most bytes of one line held at once (16 MiB): a longer text line is delivered in parts
/// (split between characters), a longer JSON line is skipped — a file without newlines cannot
/// make the reader buffer all of it.
const MAX_LINE: usize = 16 << 20;

struct OpenFile {
    format: Format,
    lines: Box<dyn BufRead + Send>,
    path: PathBuf,
    any_content: bool,
    first_piece: bool,
    /// The bytes of a character split by the MAX_LINE cut, to go in front of the next part.
    carry: Vec<u8>,
}

impl OpenFile {
    /// The next line (with its newline), or its next MAX_LINE bytes when it is longer (then
    /// `false`: not the whole line). Text parts end on a character boundary. Empty at the end.
    fn read_line(&mut self) -> std::io::Result<(Vec<u8>, bool)> {
        let mut line = std::mem::take(&mut self.carry);
        let room = MAX_LINE.saturating_sub(line.len()) as u64;
        (&mut self.lines).take(room).read_until(b'\n', &mut line)?;
        let whole = line.ends_with(b"\n") || line.len() < MAX_LINE;
        if !whole
            && self.format == Format::Text
            && let Err(e) = std::str::from_utf8(&line)
            && e.error_len().is_none()
        {
            self.carry = line.split_off(e.valid_up_to());
        }
        Ok((line, whole))
    }

    /// Consumes the rest of an over-long line without keeping it.
    fn skip_rest_of_line(&mut self) -> std::io::Result<()> {
        let mut scratch = Vec::new();
        loop {
            scratch.clear();
            (&mut self.lines)
                .take(MAX_LINE as u64)
                .read_until(b'\n', &mut scratch)?;
            if scratch.is_empty() || scratch.ends_with(b"\n") {
                return Ok(());
            }
        }
    }
}

/// Iterator over a corpus's [`Piece`]s; see [`Corpus::pieces`].
pub struct Pieces<'a> {
    corpus: &'a Corpus,
    file: usize,
    reader: Option<OpenFile>,
    skipped: SkipCounts,
    yielded: u64,
}

impl Pieces<'_> {
    /// What has been skipped so far.
    pub fn skipped(&self) -> &SkipCounts {
        &self.skipped
    }

    fn open(&self, path: &Path) -> Result<OpenFile> {
        let format = format_of(path).unwrap_or(Format::Text);
        let f = File::open(path).map_err(|e| PrismError::io(path, e))?;
        let raw: Box<dyn Read + Send> = if format == Format::JsonlZst {
            Box::new(
                ruzstd::decoding::StreamingDecoder::new(BufReader::new(f)).map_err(|e| {
                    PrismError::InvalidInput(format!("{}: not a zstd stream: {e}", path.display()))
                })?,
            )
        } else {
            Box::new(f)
        };
        Ok(OpenFile {
            format,
            lines: Box::new(BufReader::with_capacity(1 << 16, raw)),
            path: path.to_path_buf(),
            any_content: false,
            first_piece: true,
            carry: Vec::new(),
        })
    }

    /// The next piece of the open file, `None` at its end.
    fn next_in_file(&mut self) -> Result<Option<Piece>> {
        let Some(f) = self.reader.as_mut() else {
            return Ok(None);
        };
        let mut chunk = String::new();
        loop {
            let (line, whole) = f.read_line().map_err(|e| {
                let what = if f.format == Format::JsonlZst {
                    "corrupt zstd data: "
                } else {
                    ""
                };
                PrismError::io(&f.path, std::io::Error::new(e.kind(), format!("{what}{e}")))
            })?;
            if line.is_empty() {
                break;
            }
            f.any_content = true;
            if !whole && f.format != Format::Text {
                // A JSON line longer than MAX_LINE: skipped (its rest consumed), not buffered.
                f.skip_rest_of_line()
                    .map_err(|e| PrismError::io(&f.path, e))?;
                self.skipped.too_long += 1;
                continue;
            }
            let Ok(line) = String::from_utf8(line) else {
                self.skipped.invalid_utf8 += 1;
                continue;
            };
            match f.format {
                Format::Text => {
                    chunk.push_str(&line);
                    if chunk.len() >= TEXT_CHUNK {
                        break;
                    }
                }
                Format::Jsonl | Format::JsonlZst => {
                    if line.trim().is_empty() {
                        continue;
                    }
                    let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                        self.skipped.invalid_json += 1;
                        continue;
                    };
                    match v.get(&self.corpus.text_field).and_then(|t| t.as_str()) {
                        Some(text) if !text.is_empty() => {
                            return Ok(Some(Piece {
                                text: text.to_string(),
                                starts_document: true,
                            }));
                        }
                        _ => self.skipped.missing_field += 1,
                    }
                }
            }
        }
        if chunk.is_empty() {
            return Ok(None);
        }
        let starts = std::mem::replace(&mut f.first_piece, false);
        Ok(Some(Piece {
            text: chunk,
            starts_document: starts,
        }))
    }
}

impl Iterator for Pieces<'_> {
    type Item = Result<Piece>;

    fn next(&mut self) -> Option<Result<Piece>> {
        loop {
            if self.reader.is_none() {
                if self.file >= self.corpus.files.len() {
                    if self.yielded == 0 {
                        self.yielded = u64::MAX; // report once
                        return Some(Err(PrismError::InvalidInput(format!(
                            "{}: the corpus contains no text (skipped: {:?})",
                            self.corpus.root.display(),
                            self.skipped
                        ))));
                    }
                    return None;
                }
                let path = self.corpus.files[self.file].clone();
                self.file += 1;
                match self.open(&path) {
                    Ok(f) => self.reader = Some(f),
                    Err(e) => return Some(Err(e)),
                }
            }
            match self.next_in_file() {
                Ok(Some(p)) => {
                    self.yielded += 1;
                    return Some(Ok(p));
                }
                Ok(None) => {
                    if let Some(f) = self.reader.take()
                        && !f.any_content
                    {
                        self.skipped.empty_files += 1;
                    }
                }
                Err(e) => {
                    self.reader = None;
                    return Some(Err(e));
                }
            }
        }
    }
}
