//! The fatal manifest errors: the whole file is unusable, so the run stops before anything is sent.

use std::io;
use std::path::{Path, PathBuf};

/// An example header, quoted in messages that tell the user what the first line must look like.
const EXAMPLE_HEADER: &str = "category_id,person_id,image_url,person_name";

/// Why the manifest as a whole cannot be used. Bad rows are not errors: they are
/// [`InvalidRow`](super::InvalidRow)s and the run goes on.
///
/// Column numbers in these errors count from 1, as a spreadsheet user would.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The file could not be opened (not found, permission denied, ...).
    #[error("cannot open manifest {}: {}", path.display(), open_advice(error))]
    Open { path: PathBuf, error: io::Error },

    /// The path names a directory.
    #[error("manifest {} is a directory, not a file; pass the path of the CSV file", path.display())]
    IsDirectory { path: PathBuf },

    /// The file's size or modification time changed while it was read: it is still being
    /// written, and a plan of half a file would import part of it.
    #[error(
        "manifest {} changed while it was read (it is still being written?); nothing was sent. \
         Run again once it is complete (write it to a temporary name and rename it into place)",
        path.display()
    )]
    Changed { path: PathBuf },

    /// Reading failed part-way through.
    #[error(
        "cannot read manifest {}, line {line}: {error}; check that the file is readable \
         (copy it to a local disk if it lives on a network share) and retry",
        path.display()
    )]
    Read {
        path: PathBuf,
        line: u64,
        error: io::Error,
    },

    /// The file has no bytes at all.
    #[error(
        "manifest {}, line 1: the file is empty; the first line must be a header such as `{EXAMPLE_HEADER}`",
        path.display()
    )]
    Empty { path: PathBuf },

    /// The file holds only blank lines.
    #[error(
        "manifest {}, line {line}: no header row, the file holds only blank lines; \
         the first line must be a header such as `{EXAMPLE_HEADER}`",
        path.display()
    )]
    NoHeader { path: PathBuf, line: u64 },

    /// The header holds a NUL byte: this is binary data, not text.
    #[error(
        "manifest {}, line {line}, column {column}: not a CSV file (it holds a NUL byte, \
         so this is binary data such as an image, a spreadsheet or a UTF-16 text file); \
         export the manifest as CSV in UTF-8",
        path.display()
    )]
    NotCsv {
        path: PathBuf,
        line: u64,
        column: usize,
    },

    /// The file is not text in the encoding chosen (or in any `--encoding auto` tries).
    #[error(
        "manifest {}, line {line}: not valid {tried} text, so nothing of it is imported; \
         save it as CSV in UTF-8 (in Excel: \"CSV UTF-8\"), or name its encoding with \
         --encoding utf-8|gb18030|utf-16",
        path.display()
    )]
    Encoding {
        path: PathBuf,
        line: u64,
        tried: String,
    },

    /// Most values with other than ASCII are UTF-8 and some are not: read as GB18030, the
    /// UTF-8 ones would be garbled (every Chinese name and id turned into others).
    #[error(
        "manifest {}, line {line}, column {column}: not UTF-8, while {utf8_values} other \
         {} UTF-8: the file mixes encodings (a line pasted from another file?), so nothing of \
         it is imported; save the file again as UTF-8 (in Excel: \"CSV UTF-8\"), or, if it is \
         all GB18030, say so with --encoding gb18030",
        path.display(),
        if *utf8_values == 1 { "value is" } else { "values are" }
    )]
    MixedEncoding {
        path: PathBuf,
        line: u64,
        column: u64,
        utf8_values: u64,
    },

    /// Read as CSV, the header lacks required columns, and it holds tabs.
    #[error(
        "manifest {}, line {line}: the header holds tabs and its columns are not found when it \
         is read as comma-separated: it looks tab-separated; name the file .tsv, or save it \
         as CSV",
        path.display()
    )]
    LooksTabSeparated { path: PathBuf, line: u64 },

    /// Read as CSV, the header lacks required columns, and its names hold semicolons.
    #[error(
        "manifest {}, line {line}: the header's columns are not found when it is read as \
         comma-separated, and it holds semicolons: it looks semicolon-separated (what Excel \
         saves where the decimal mark is a comma); save it as \"CSV UTF-8 (comma delimited)\", \
         or as tab-separated text (.tsv)",
        path.display()
    )]
    LooksSemicolonSeparated { path: PathBuf, line: u64 },

    /// The header is not valid UTF-8.
    #[error(
        "manifest {}, line {line}, column {column}: the header is not valid UTF-8; \
         save the manifest as CSV in UTF-8 (in Excel: \"CSV UTF-8\")",
        path.display()
    )]
    HeaderNotUtf8 {
        path: PathBuf,
        line: u64,
        column: usize,
    },

    /// One or more required columns are absent from the header.
    #[error(
        "manifest {}, line {line}: required column{} {} missing; the header has {}; \
         column names ignore case, spaces, `_` and `-`, so `category_id`, `CategoryId`, \
         `category-id` and `CATEGORYID` are all accepted (required: category_id, person_id, \
         image_url; optional: person_name)",
        path.display(),
        if missing.len() == 1 { "" } else { "s" },
        quoted_list(missing),
        found_list(found)
    )]
    MissingColumn {
        path: PathBuf,
        line: u64,
        missing: Vec<&'static str>,
        found: Vec<String>,
    },

    /// A folder given as the manifest holds no photo its layout places.
    #[error(
        "{}: a folder with no photo where the layout `{layout}` puts them ({skipped} files \
         skipped); give --layout, e.g. --layout '{{category_id}}/{{person_id}}/*'",
        path.display()
    )]
    EmptyFolder {
        path: PathBuf,
        layout: String,
        skipped: u64,
    },

    /// A spreadsheet that could not be read (damaged, encrypted, no such sheet).
    #[error("manifest {}: cannot read it as a spreadsheet: {message}", path.display())]
    Workbook { path: PathBuf, message: String },

    /// `--columns` names a header the file does not have.
    #[error(
        "manifest {}, line {line}: --columns maps {field} to the header `{header}`, which the file \
         does not have; its headers are: {}",
        path.display(),
        found.join(", ")
    )]
    MappedHeaderMissing {
        path: PathBuf,
        line: u64,
        field: &'static str,
        header: String,
        found: Vec<String>,
    },

    /// The same known column appears twice once spellings are normalised.
    #[error(
        "manifest {}, line {line}: column `{column}` is given twice (columns {first} and {second} \
         are the same name once case, spaces, `_` and `-` are ignored); remove or rename one of them",
        path.display()
    )]
    DuplicateColumn {
        path: PathBuf,
        line: u64,
        column: &'static str,
        first: usize,
        second: usize,
    },

    /// The CSV reader rejected the data.
    #[error(
        "manifest {}, line {line}: CSV syntax error: {message}; fix the line or re-export the file as CSV",
        path.display()
    )]
    Syntax {
        path: PathBuf,
        line: u64,
        message: String,
    },

    /// A quoted field opens and never closes, so the rest of the file was swallowed into it.
    #[error(
        "manifest {}, line {line}: a quoted field starts on this line and is never closed, so every \
         line after it was read as part of one field; add the missing closing `\"`",
        path.display()
    )]
    UnclosedQuote { path: PathBuf, line: u64 },
}

impl ManifestError {
    /// The manifest the error is about.
    pub fn path(&self) -> &Path {
        match self {
            Self::Open { path, .. }
            | Self::IsDirectory { path }
            | Self::Changed { path }
            | Self::Read { path, .. }
            | Self::Empty { path }
            | Self::NoHeader { path, .. }
            | Self::NotCsv { path, .. }
            | Self::HeaderNotUtf8 { path, .. }
            | Self::Encoding { path, .. }
            | Self::MixedEncoding { path, .. }
            | Self::LooksTabSeparated { path, .. }
            | Self::LooksSemicolonSeparated { path, .. }
            | Self::MissingColumn { path, .. }
            | Self::MappedHeaderMissing { path, .. }
            | Self::Workbook { path, .. }
            | Self::EmptyFolder { path, .. }
            | Self::DuplicateColumn { path, .. }
            | Self::Syntax { path, .. }
            | Self::UnclosedQuote { path, .. } => path,
        }
    }

    /// The 1-based line the error is about, when there is one.
    pub fn line(&self) -> Option<u64> {
        match self {
            Self::Open { .. }
            | Self::IsDirectory { .. }
            | Self::Changed { .. }
            | Self::Workbook { .. }
            | Self::EmptyFolder { .. } => None,
            Self::Empty { .. } => Some(1),
            Self::Read { line, .. }
            | Self::NoHeader { line, .. }
            | Self::NotCsv { line, .. }
            | Self::HeaderNotUtf8 { line, .. }
            | Self::Encoding { line, .. }
            | Self::MixedEncoding { line, .. }
            | Self::LooksTabSeparated { line, .. }
            | Self::LooksSemicolonSeparated { line, .. }
            | Self::MissingColumn { line, .. }
            | Self::MappedHeaderMissing { line, .. }
            | Self::DuplicateColumn { line, .. }
            | Self::Syntax { line, .. }
            | Self::UnclosedQuote { line, .. } => Some(*line),
        }
    }
}

fn open_advice(error: &io::Error) -> String {
    match error.kind() {
        io::ErrorKind::NotFound => format!("{error}; check the path"),
        io::ErrorKind::PermissionDenied => {
            format!("{error}; check that your user may read the file")
        }
        _ => format!("{error}; check the path and that the file is readable"),
    }
}

fn quoted_list(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|name| format!("`{name}`")).collect();
    quoted.join(", ")
}

fn found_list(found: &[String]) -> String {
    if found.is_empty() {
        return "no columns".to_owned();
    }
    let quoted: Vec<String> = found.iter().map(|name| format!("`{name}`")).collect();
    format!("columns {}", quoted.join(", "))
}
