//! Spreadsheets as HR exports them: an `.xlsx` (or `.xls`, `.ods`) workbook is read whole, one
//! sheet (`--sheet`, else the first), and handed to the CSV reader as text with one line per
//! sheet row, so line numbers in messages are the sheet's row numbers.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use calamine::{Data, Reader as _};

use super::ManifestError;

/// A ZIP archive (xlsx, ods) or an OLE compound file (xls) by its first bytes, with a
/// spreadsheet's extension: a CSV file never starts with either.
pub(super) fn is_workbook(path: &Path, file: &mut File) -> bool {
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    if !matches!(
        extension.as_deref(),
        Some("xlsx" | "xlsm" | "xlsb" | "xls" | "ods")
    ) {
        return false;
    }
    let mut magic = [0u8; 4];
    let read = file.read_exact(&mut magic).is_ok();
    let _ = file.seek(SeekFrom::Start(0));
    read && (magic == *b"PK\x03\x04" || magic == [0xD0, 0xCF, 0x11, 0xE0])
}

/// The sheet as CSV text: row `n` of the sheet on line `n`. A line break inside a cell becomes
/// a space (no id, URL or name may hold one), so the lines stay the sheet's rows.
pub(super) fn to_csv(path: &Path, sheet: Option<&str>) -> Result<Vec<u8>, ManifestError> {
    let fail = |message: String| ManifestError::Workbook {
        path: path.to_path_buf(),
        message,
    };
    let mut workbook = calamine::open_workbook_auto(path).map_err(|e| fail(e.to_string()))?;
    let names = workbook.sheet_names();
    let range = match sheet {
        Some(name) => workbook.worksheet_range(name).map_err(|e| {
            fail(format!(
                "sheet `{name}`: {e} (its sheets: {})",
                names.join(", ")
            ))
        })?,
        None => workbook
            .worksheet_range_at(0)
            .ok_or_else(|| fail("the workbook has no sheet".into()))?
            .map_err(|e| fail(e.to_string()))?,
    };
    let (first_row, first_column) = range.start().unwrap_or((0, 0));
    let mut out = Vec::new();
    // Rows above the used range: blank lines, skipped like any blank line.
    out.extend(std::iter::repeat_n(b'\n', first_row as usize));
    {
        let mut writer = csv::WriterBuilder::new()
            .flexible(true)
            .terminator(csv::Terminator::Any(b'\n'))
            .from_writer(&mut out);
        for row in range.rows() {
            // Columns left of the used range keep their places (a header mapped by position
            // would not care; messages count columns from A).
            let cells = std::iter::repeat_n(String::new(), first_column as usize)
                .chain(row.iter().map(cell_text));
            writer
                .write_record(cells)
                .map_err(|e| fail(e.to_string()))?;
        }
        writer.flush().map_err(|e| fail(e.to_string()))?;
    }
    Ok(out)
}

fn cell_text(cell: &Data) -> String {
    let text = match cell {
        Data::Empty => return String::new(),
        // A staff number typed as a number is written as one (1001, not 1001.0).
        Data::Float(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", *f as i64),
        other => other.to_string(),
    };
    text.replace(['\r', '\n'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_written_as_people_typed_them() {
        assert_eq!(cell_text(&Data::Float(1001.0)), "1001");
        assert_eq!(cell_text(&Data::Float(2.5)), "2.5");
        assert_eq!(cell_text(&Data::Int(7)), "7");
        assert_eq!(cell_text(&Data::String("李\n伟".into())), "李 伟");
        assert_eq!(cell_text(&Data::Empty), "");
    }
}
