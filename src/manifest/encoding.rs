//! The manifest's character encoding: decided for the whole file before the CSV reader sees a
//! byte, so a file that is not UTF-8 is decoded whole (GB18030/GBK, UTF-16) or refused whole —
//! never imported in part. Also whether the file is tab-separated.

use std::fs::File;
use std::io::{self, Cursor, Read, Seek};
use std::path::Path;

use super::ManifestError;

/// How the manifest's bytes are decoded (`--encoding`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Encoding {
    /// A BOM names it; else UTF-8 when the whole file is valid UTF-8; else GB18030 when the
    /// whole file decodes without errors; else the file is refused.
    #[default]
    Auto,
    Utf8,
    Gb18030,
    Utf16,
}

/// The manifest's text as UTF-8 bytes to parse, and whether it is tab-separated.
pub(crate) struct Decoded {
    pub source: Box<dyn Read + Send>,
    pub tabs: bool,
    /// The first line holds a tab (whether or not the file is read as tab-separated).
    pub tab_in_header: bool,
    /// The encoding the file was read as (`UTF-8`, `GB18030`, `UTF-16LE`, …).
    pub name: &'static str,
}

/// Decides the encoding of `file` and returns a UTF-8 source. A UTF-8 file is streamed (after
/// one pass that validates it), anything else is decoded whole in memory.
pub(crate) fn decode(
    path: &Path,
    mut file: File,
    encoding: Encoding,
) -> Result<Decoded, ManifestError> {
    let read_err = |error| ManifestError::Read {
        path: path.to_path_buf(),
        line: 1,
        error,
    };
    let mut head = [0u8; 3];
    let n = read_up_to(&mut file, &mut head).map_err(read_err)?;
    let bom = encoding_rs::Encoding::for_bom(&head[..n]);
    file.rewind().map_err(read_err)?;
    let chosen = match (encoding, bom) {
        (Encoding::Auto, Some((found, _))) => found,
        (Encoding::Auto, None) => match first_invalid_utf8(&mut file).map_err(read_err)? {
            None => return utf8_stream(path, file),
            Some(_) => {
                file.rewind().map_err(read_err)?;
                let mut start = [0u8; 512];
                let n = read_up_to(&mut file, &mut start).map_err(read_err)?;
                let nuls = start[..n].iter().filter(|&&b| b == 0).count();
                if n > 0 && nuls * 4 >= n {
                    // One byte in four or more a NUL: UTF-16 without a byte-order mark (or
                    // binary data), which no GB18030 text is.
                    return Err(ManifestError::NotCsv {
                        path: path.to_path_buf(),
                        line: 1,
                        column: 1,
                    });
                }
                file.rewind().map_err(read_err)?;
                let runs = Runs::count(&mut file).map_err(read_err)?;
                if let Some((line, column)) = runs.mixed() {
                    return Err(ManifestError::MixedEncoding {
                        path: path.to_path_buf(),
                        line,
                        column,
                        utf8_values: runs.utf8.len() as u64,
                    });
                }
                encoding_rs::GB18030
            }
        },
        (Encoding::Utf8, _) => {
            if let Some(line) = first_invalid_utf8(&mut file).map_err(read_err)? {
                return Err(not_decodable(path, "UTF-8", line));
            }
            return utf8_stream(path, file);
        }
        (Encoding::Gb18030, _) => encoding_rs::GB18030,
        (Encoding::Utf16, Some((found, _))) if found != encoding_rs::UTF_8 => found,
        (Encoding::Utf16, _) => {
            // No BOM: a leading NUL byte means big-endian ASCII.
            if head[0] == 0 {
                encoding_rs::UTF_16BE
            } else {
                encoding_rs::UTF_16LE
            }
        }
    };
    if chosen == encoding_rs::UTF_8 {
        return utf8_stream(path, file);
    }
    let mut bytes = Vec::new();
    file.rewind().map_err(read_err)?;
    file.read_to_end(&mut bytes).map_err(read_err)?;
    let text = decode_whole(path, chosen, &bytes)?;
    let tabs = looks_tabbed(path, text.as_bytes());
    let tab_in_header = tab_in_first_line(text.as_bytes());
    Ok(Decoded {
        source: Box::new(Cursor::new(text.into_bytes())),
        tabs,
        tab_in_header,
        name: chosen.name(),
    })
}

fn utf8_stream(path: &Path, mut file: File) -> Result<Decoded, ManifestError> {
    let read_err = |error| ManifestError::Read {
        path: path.to_path_buf(),
        line: 1,
        error,
    };
    file.rewind().map_err(read_err)?;
    let mut first = vec![0u8; 64 * 1024];
    let n = read_up_to(&mut file, &mut first).map_err(read_err)?;
    first.truncate(n);
    let tabs = looks_tabbed(path, &first);
    let tab_in_header = tab_in_first_line(&first);
    Ok(Decoded {
        source: Box::new(Cursor::new(first).chain(file)),
        tabs,
        tab_in_header,
        name: "UTF-8",
    })
}

/// Decodes all of `bytes` (a BOM of that encoding is dropped); a byte sequence that is not
/// text in `encoding` refuses the file, naming its line.
fn decode_whole(
    path: &Path,
    encoding: &'static encoding_rs::Encoding,
    bytes: &[u8],
) -> Result<String, ManifestError> {
    let mut decoder = encoding.new_decoder_with_bom_removal();
    let capacity = decoder
        .max_utf8_buffer_length_without_replacement(bytes.len())
        .unwrap_or(bytes.len() * 3);
    let mut text = String::with_capacity(capacity);
    let (result, _read) = decoder.decode_to_string_without_replacement(bytes, &mut text, true);
    match result {
        encoding_rs::DecoderResult::InputEmpty => Ok(text),
        _ => {
            let line = text.bytes().filter(|&b| b == b'\n').count() as u64 + 1;
            Err(not_decodable(path, encoding.name(), line))
        }
    }
}

fn not_decodable(path: &Path, tried: &str, line: u64) -> ManifestError {
    ManifestError::Encoding {
        path: path.to_path_buf(),
        line,
        tried: tried.to_string(),
    }
}

/// The line of the first byte that is not UTF-8, streaming the file; `None` when it all is.
fn first_invalid_utf8(file: &mut File) -> io::Result<Option<u64>> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut carry = 0usize;
    let mut line = 1u64;
    loop {
        let n = file.read(&mut buf[carry..])?;
        let filled = carry + n;
        let at_end = n == 0;
        match std::str::from_utf8(&buf[..filled]) {
            Ok(_) => {
                if at_end {
                    return Ok(None);
                }
                line += count_newlines(&buf[..filled]);
                carry = 0;
            }
            Err(e) => {
                let good = e.valid_up_to();
                if e.error_len().is_some() || at_end {
                    return Ok(Some(line + count_newlines(&buf[..good])));
                }
                // A character cut by the end of the buffer: keep its bytes for the next read.
                line += count_newlines(&buf[..good]);
                buf.copy_within(good..filled, 0);
                carry = filled - good;
            }
        }
        if at_end {
            return Ok(None);
        }
    }
}

/// The text of a file that is not UTF-8 throughout, as its runs of other than ASCII (a name, a
/// department): which distinct ones are UTF-8 that reads as text, which are not UTF-8. Distinct
/// values, so that a roster repeating one department or one gender on every line weighs as one.
#[derive(Debug, Default)]
struct Runs {
    /// Distinct runs that are UTF-8 of letters a roster holds: accented Latin or CJK. GBK's
    /// bytes pass as UTF-8 by chance now and then, mostly as other characters (`前台` as
    /// `ǰ̨`, `女` as `Ů`), which do not count.
    utf8: std::collections::HashSet<u64>,
    /// Of those, the runs with CJK characters.
    utf8_wide: std::collections::HashSet<u64>,
    /// Distinct runs that are not UTF-8.
    not_utf8: std::collections::HashSet<u64>,
    /// The first of them: its line, and the column (in characters) where it starts.
    first: Option<(u64, u64)>,
}

/// Distinct runs kept of each kind: enough to decide, and a bound on memory.
const RUNS_KEPT: usize = 100_000;
/// The longest run looked at; the rest of a longer one is not.
const RUN_BYTES: usize = 4096;

impl Runs {
    fn count(file: &mut impl Read) -> io::Result<Runs> {
        let mut runs = Runs::default();
        let mut reader = io::BufReader::with_capacity(256 * 1024, file);
        let (mut line, mut column) = (1u64, 0u64);
        let mut run = Vec::new();
        loop {
            let buf = io::BufRead::fill_buf(&mut reader)?;
            if buf.is_empty() {
                break;
            }
            for &byte in buf {
                if !byte.is_ascii() {
                    if run.len() < RUN_BYTES {
                        run.push(byte);
                    }
                    continue;
                }
                if !run.is_empty() {
                    column += runs.add(&run, line, column);
                    run.clear();
                }
                match byte {
                    b'\n' => (line, column) = (line + 1, 0),
                    b'\r' => column = 0,
                    _ => column += 1,
                }
            }
            let n = buf.len();
            io::BufRead::consume(&mut reader, n);
        }
        if !run.is_empty() {
            runs.add(&run, line, column);
        }
        Ok(runs)
    }

    /// Counts one run that starts at `column` of `line`; its length in characters.
    fn add(&mut self, run: &[u8], line: u64, column: u64) -> u64 {
        let hash = xxhash_rust::xxh3::xxh3_64(run);
        let keep = |set: &mut std::collections::HashSet<u64>| {
            if set.len() < RUNS_KEPT {
                set.insert(hash);
            }
        };
        let text = match std::str::from_utf8(run) {
            Ok(text) => text,
            // Cut at RUN_BYTES inside a character: the whole characters before count.
            Err(e) if e.error_len().is_none() && run.len() == RUN_BYTES => {
                std::str::from_utf8(&run[..e.valid_up_to()]).unwrap_or_default()
            }
            Err(_) => {
                keep(&mut self.not_utf8);
                self.first.get_or_insert((line, column + 1));
                return run.len() as u64;
            }
        };
        let is_cjk = |c: char| {
            matches!(c, '\u{3000}'..='\u{30FF}' | '\u{3400}'..='\u{9FFF}'
                | '\u{AC00}'..='\u{D7AF}' | '\u{FF00}'..='\u{FFEF}')
        };
        let is_latin = |c: char| matches!(c, '\u{C0}'..='\u{FF}') && c != '×' && c != '÷';
        if text.chars().all(|c| is_cjk(c) || is_latin(c)) {
            keep(&mut self.utf8);
            if text.chars().any(is_cjk) {
                keep(&mut self.utf8_wide);
            }
        }
        text.chars().count() as u64
    }

    /// The first place that is not UTF-8 when the file mixes encodings: it has more distinct
    /// UTF-8 values than others, or at least two with CJK characters and those are at least a
    /// twentieth of the others (by chance, GBK names pass as UTF-8 CJK about once in 700).
    fn mixed(&self) -> Option<(u64, u64)> {
        let (utf8, wide, not) = (self.utf8.len(), self.utf8_wide.len(), self.not_utf8.len());
        let mixed = utf8 > not || (wide >= 2 && wide * 20 >= not);
        mixed.then_some(self.first?)
    }
}

fn count_newlines(bytes: &[u8]) -> u64 {
    memchr::memchr_iter(b'\n', bytes).count() as u64
}

fn read_up_to(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

fn tab_in_first_line(start: &[u8]) -> bool {
    start
        .split(|&b| b == b'\n')
        .next()
        .is_some_and(|first| first.contains(&b'\t'))
}

/// Tab-separated: a `.tsv` name, or a first line with tabs and no commas.
fn looks_tabbed(path: &Path, start: &[u8]) -> bool {
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("tsv"))
    {
        return true;
    }
    let first = start.split(|&b| b == b'\n').next().unwrap_or_default();
    first.contains(&b'\t') && !first.contains(&b',')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoded(
        bytes: &[u8],
        name: &str,
        encoding: Encoding,
    ) -> Result<(String, bool), ManifestError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let file = File::open(&path).unwrap();
        let mut d = decode(&path, file, encoding)?;
        let mut text = String::new();
        d.source.read_to_string(&mut text).unwrap();
        Ok((text, d.tabs))
    }

    #[test]
    fn gbk_chinese_names_are_decoded_whole() {
        let (gbk, _, _) =
            encoding_rs::GBK.encode("category_id,person_id,person_name\nstaff,li,李伟\n");
        let (text, tabs) = decoded(&gbk, "m.csv", Encoding::Auto).unwrap();
        assert!(text.contains("李伟"), "{text}");
        assert!(!tabs);
    }

    #[test]
    fn a_utf8_roster_with_one_gbk_line_is_refused_naming_the_line_and_not_read_as_gb18030() {
        let mut bytes = "category_id,person_id,person_name\n".as_bytes().to_vec();
        for i in 0..20 {
            bytes.extend(format!("staff,员工{i:03},姓名{i}\n").as_bytes());
        }
        let (gbk, _, _) = encoding_rs::GBK.encode("staff,员工999,新人\n");
        bytes.extend(gbk.iter());
        let error = decoded(&bytes, "m.csv", Encoding::Auto).unwrap_err();
        let text = error.to_string();
        assert!(
            matches!(
                error,
                ManifestError::MixedEncoding {
                    line: 22,
                    column: 7,
                    utf8_values: 2,
                    ..
                }
            ),
            "{text}"
        );
        assert!(
            text.contains("line 22, column 7: not UTF-8, while 2 other values are UTF-8"),
            "{text}"
        );
        // A line of accented Latin in cp1252 among UTF-8 ones is named the same way.
        // Forced, the file is read as the operator says.
        assert!(decoded(&bytes, "m.csv", Encoding::Gb18030).is_ok());
        let latin: &[u8] = b"category_id,person_id,person_name\nstaff,a,Jos\xc3\xa9\n\
            staff,b,Ren\xe9e\nstaff,c,Zo\xc3\xab\n";
        let error = decoded(latin, "m.csv", Encoding::Auto).unwrap_err();
        assert!(
            matches!(
                error,
                ManifestError::MixedEncoding {
                    line: 3,
                    column: 12,
                    utf8_values: 2,
                    ..
                }
            ),
            "{error}"
        );
    }

    #[test]
    fn utf16_without_a_byte_order_mark_is_refused_as_not_csv_rather_than_not_gb18030() {
        let body = "category_id,person_id\nstaff,王芳\n";
        let be: Vec<u8> = body.encode_utf16().flat_map(u16::to_be_bytes).collect();
        let error = decoded(&be, "m.csv", Encoding::Auto).unwrap_err();
        assert!(
            matches!(
                error,
                ManifestError::NotCsv {
                    line: 1,
                    column: 1,
                    ..
                }
            ),
            "{error}"
        );
        assert!(error.to_string().contains("UTF-16"), "{error}");
        // Forced, it is read.
        assert_eq!(decoded(&be, "m.csv", Encoding::Utf16).unwrap().0, body);
    }

    #[test]
    fn gbk_text_that_passes_as_utf8_by_chance_does_not_make_a_gbk_file_mixed() {
        // `前台` and `女` in GBK are valid UTF-8 (`ǰ̨`, `Ů`): a roster whose only Chinese is
        // that department and that gender on most lines is still GBK.
        let mut body = String::from("category_id,person_id,department,gender\n");
        for i in 0..30 {
            let gender = if i % 3 == 0 { "男" } else { "女" };
            body.push_str(&format!("staff,E{i:03},前台,{gender}\n"));
        }
        let gbk = encoding_rs::GBK.encode(&body).0;
        assert!(
            decoded(&gbk, "m.csv", Encoding::Auto)
                .unwrap()
                .0
                .contains("前台")
        );
        // Names: one that passes as UTF-8 CJK by chance among GBK ones.
        let mut gbk = Vec::new();
        for name in ["李伟", "王芳", "张敏", "刘洋", "陈静"] {
            gbk.extend(
                encoding_rs::GBK
                    .encode(&format!("staff,p,{name}\n"))
                    .0
                    .iter(),
            );
        }
        // Six bytes that are UTF-8 `伟伟` and also GBK text.
        gbk.extend("staff,p,伟伟\n".as_bytes());
        assert!(
            decoded(&gbk, "m.csv", Encoding::Auto)
                .unwrap()
                .0
                .contains("李伟")
        );
    }

    #[test]
    fn utf16_with_a_bom_is_decoded_in_either_byte_order() {
        let body = "category_id,person_id\nstaff,王芳\n";
        let le: Vec<u8> = [0xFF, 0xFE]
            .into_iter()
            .chain(body.encode_utf16().flat_map(u16::to_le_bytes))
            .collect();
        let be: Vec<u8> = [0xFE, 0xFF]
            .into_iter()
            .chain(body.encode_utf16().flat_map(u16::to_be_bytes))
            .collect();
        assert_eq!(decoded(&le, "m.csv", Encoding::Auto).unwrap().0, body);
        assert_eq!(decoded(&be, "m.csv", Encoding::Auto).unwrap().0, body);
    }

    #[test]
    fn a_file_that_is_neither_utf8_nor_gb18030_is_refused_naming_its_first_bad_line() {
        let bytes = b"category_id,person_id\nstaff,ok\nstaff,\x81\x20bad\n";
        let error = decoded(bytes, "m.csv", Encoding::Auto)
            .unwrap_err()
            .to_string();
        assert!(error.contains("line 3"), "{error}");
        let error = decoded(b"a,b\n\xff\n", "m.csv", Encoding::Utf8)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("line 2") && error.contains("UTF-8"),
            "{error}"
        );
    }

    #[test]
    fn a_tabbed_header_with_commas_in_a_name_is_refused_as_looking_tab_separated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.csv");
        std::fs::write(
            &path,
            "category_id\tperson_id\timage_url\tnotes, free\nl\tp\thttps://h/a\tx\n",
        )
        .unwrap();
        let error = super::super::Reader::open(&path, &Default::default())
            .err()
            .unwrap();
        assert!(error.to_string().contains("looks tab-separated"), "{error}");
    }

    #[test]
    fn a_semicolon_separated_header_is_refused_as_looking_semicolon_separated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.csv");
        std::fs::write(
            &path,
            "category_id;person_id;image_url\nl;p;https://h/a.jpg\n",
        )
        .unwrap();
        let error = super::super::Reader::open(&path, &Default::default())
            .err()
            .unwrap();
        assert!(
            matches!(
                error,
                ManifestError::LooksSemicolonSeparated { line: 1, .. }
            ),
            "{error}"
        );
        assert!(error.to_string().contains("semicolon-separated"), "{error}");
    }

    #[test]
    fn tabs_are_recognised_by_extension_or_header() {
        assert!(decoded(b"a\tb\n1\t2\n", "m.txt", Encoding::Auto).unwrap().1);
        assert!(decoded(b"a,b\n", "m.tsv", Encoding::Auto).unwrap().1);
        assert!(!decoded(b"a,b\tc\n", "m.csv", Encoding::Auto).unwrap().1);
    }
}
