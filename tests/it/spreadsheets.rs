//! Rosters as HR keeps them: headers of their own mapped with `--columns`, several photo
//! columns per person, GBK text, and the same sheet as an `.xlsx` workbook.

use std::io::Write as _;

use crate::common::*;
use face_enroll::sandbox::SandboxConfig;

/// The HR export: name, staff number, department (the library), a remark, up to three photos.
const HEADER: [&str; 7] = ["姓名", "工号", "部门", "备注", "照片1", "照片2", "照片3"];

fn roster() -> Vec<[String; 7]> {
    let photo = |who: &str, n: u32| format!("https://img.example/hr/{who}/{n}.jpg");
    vec![
        [
            "李伟".into(),
            "1001".into(),
            "newsroom".into(),
            "主播".into(),
            photo("1001", 1),
            photo("1001", 2),
            photo("1001", 3),
        ],
        [
            "张敏".into(),
            "1002".into(),
            "newsroom".into(),
            String::new(),
            photo("1002", 1),
            String::new(),
            photo("1002", 3),
        ],
        [
            "王芳".into(),
            "2001".into(),
            "sports".into(),
            "记者, 体育".into(),
            photo("2001", 1),
            String::new(),
            String::new(),
        ],
        // No photo at all: one invalid row, naming the photo columns.
        [
            "赵磊".into(),
            "2002".into(),
            "sports".into(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
        ],
    ]
}

const MAPPING: &str =
    "category_id=部门,person_id=工号,person_name=姓名,image_url=照片1,照片2,照片3";

fn gbk_csv(world: &World) -> std::path::PathBuf {
    let mut text = HEADER.join(",") + "\r\n";
    for row in roster() {
        let cells: Vec<String> = row
            .iter()
            .map(|c| {
                if c.contains(',') {
                    format!("\"{c}\"")
                } else {
                    c.clone()
                }
            })
            .collect();
        text.push_str(&cells.join(","));
        text.push_str("\r\n");
    }
    let (bytes, _, unmappable) = encoding_rs::GBK.encode(&text);
    assert!(!unmappable);
    let path = world.path("hr.csv");
    std::fs::write(&path, &bytes).unwrap();
    path
}

/// A minimal .xlsx: one sheet of inline strings, as spreadsheet programs read them; the staff
/// number written as a number, as a sheet holds it.
fn xlsx(world: &World) -> std::path::PathBuf {
    fn escape(text: &str) -> String {
        text.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    }
    let mut rows = Vec::new();
    let all: Vec<Vec<String>> = std::iter::once(HEADER.iter().map(|h| h.to_string()).collect())
        .chain(roster().into_iter().map(|r| r.to_vec()))
        .collect();
    for (r, row) in all.iter().enumerate() {
        let mut cells = String::new();
        for (c, value) in row.iter().enumerate() {
            let at = format!("{}{}", (b'A' + c as u8) as char, r + 1);
            if value.is_empty() {
                continue;
            }
            if r > 0 && c == 1 {
                cells.push_str(&format!(r#"<c r="{at}"><v>{value}</v></c>"#));
            } else {
                cells.push_str(&format!(
                    r#"<c r="{at}" t="inlineStr"><is><t>{}</t></is></c>"#,
                    escape(value)
                ));
            }
        }
        rows.push(format!(r#"<row r="{}">{cells}</row>"#, r + 1));
    }
    let sheet = format!(
        r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>{}</sheetData></worksheet>"#,
        rows.join("")
    );
    let files = [
        (
            "[Content_Types].xml",
            r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/><Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/></Types>"#.to_string(),
        ),
        (
            "_rels/.rels",
            r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/></Relationships>"#.to_string(),
        ),
        (
            "xl/workbook.xml",
            r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"><sheets><sheet name="花名册" sheetId="1" r:id="rId1"/></sheets></workbook>"#.to_string(),
        ),
        (
            "xl/_rels/workbook.xml.rels",
            r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/></Relationships>"#.to_string(),
        ),
        ("xl/worksheets/sheet1.xml", sheet),
    ];
    let path = world.path("hr.xlsx");
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
    let options = zip::write::SimpleFileOptions::default();
    for (name, body) in files {
        zip.start_file(name, options).unwrap();
        zip.write_all(body.as_bytes()).unwrap();
    }
    zip.finish().unwrap();
    path
}

/// (library, person, URL) of every face, sorted.
fn held(world: &World) -> Vec<(String, String, String)> {
    let mut faces: Vec<_> = world
        .faces()
        .into_iter()
        .map(|(c, p, url, _)| (c, p, url))
        .collect();
    faces.sort();
    faces
}

fn import(world: &World, manifest: &std::path::Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["--columns", MAPPING];
    args.extend_from_slice(extra);
    world.run(manifest, &args)
}

#[test]
fn a_gbk_hr_export_with_three_photo_columns_imports_as_mapped_and_the_xlsx_gives_the_same_state() {
    let from_csv = World::new(SandboxConfig::for_tests());
    let csv = gbk_csv(&from_csv);
    let check = from_csv
        .command(&["check", csv.to_str().unwrap(), "--columns", MAPPING])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&check.stdout);
    assert_eq!(check.status.code(), Some(1), "{text}{}", stderr(&check));
    assert!(
        text.contains(
            "read as gb18030; columns category_id=部门, person_id=工号, person_name=姓名, \
             image_url=照片1+照片2+照片3"
        ),
        "{text}"
    );
    assert!(text.contains("invalid rows: 1"), "{text}");
    assert!(
        text.contains("no photo in any image column (照片1, 照片2, 照片3)"),
        "{text}"
    );

    let out = import(&from_csv, &csv, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let faces = held(&from_csv);
    assert_eq!(faces.len(), 6, "{faces:?}");
    assert_eq!(
        faces.iter().filter(|(_, p, _)| p == "1001").count(),
        3,
        "one image per photo column"
    );
    assert!(faces.contains(&(
        "newsroom".into(),
        "1002".into(),
        "https://img.example/hr/1002/3.jpg".into()
    )));
    let names: Vec<String> = from_csv
        .sandbox
        .snapshot()
        .mts
        .categories
        .iter()
        .flat_map(|c| &c.persons)
        .filter_map(|p| p.person_name.clone())
        .collect();
    assert!(names.contains(&"张敏".to_string()), "{names:?}");

    // The same roster as a workbook: the same server state, no conversion.
    let from_xlsx = World::new(SandboxConfig::for_tests());
    let book = xlsx(&from_xlsx);
    let out = import(&from_xlsx, &book, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(held(&from_xlsx), faces);
    // Run again: nothing new to send (the probe read skipped).
    let before = from_xlsx.sandbox.snapshot().stats.requests;
    let out = import(&from_xlsx, &book, &["--no-probe"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(from_xlsx.sandbox.snapshot().stats.requests, before);
}

#[test]
fn a_mapping_that_names_a_missing_header_or_sheet_is_refused_before_anything_is_sent() {
    let world = World::new(SandboxConfig::for_tests());
    let csv = gbk_csv(&world);
    let out = world.run(
        &csv,
        &[
            "--columns",
            "category_id=部门,person_id=员工号,image_url=照片1",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--columns maps person_id to the header `员工号`"),
        "{}",
        stderr(&out)
    );
    let out = world.run(&csv, &["--columns", "library=部门"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("`library` is not a column"),
        "{}",
        stderr(&out)
    );
    let book = xlsx(&world);
    let out = import(&world, &book, &["--sheet", "Sheet9"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("花名册"),
        "the sheets are named: {}",
        stderr(&out)
    );
    assert_eq!(world.sandbox.snapshot().stats.requests, 0);
}

#[test]
fn numbered_image_url_columns_are_one_image_each_without_a_mapping() {
    let world = World::new(SandboxConfig::for_tests());
    let manifest = world.manifest(
        "m.csv",
        "category_id,person_id,image_url_1,image_url_2\n\
         lib,a,https://img.example/a1.jpg,https://img.example/a2.jpg\n\
         lib,b,,https://img.example/b2.jpg\n",
    );
    let out = world.run(&manifest, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let urls: Vec<String> = held(&world).into_iter().map(|(_, _, u)| u).collect();
    assert_eq!(
        urls,
        [
            "https://img.example/a1.jpg",
            "https://img.example/a2.jpg",
            "https://img.example/b2.jpg"
        ]
    );
}

#[test]
fn the_hr_workbook_fills_ice_libraries_as_the_gbk_export_does() {
    let samples = |world: &World| -> Vec<(String, String)> {
        let state = world.sandbox.snapshot();
        let mut all: Vec<(String, String)> = state
            .ice
            .libs
            .iter()
            .flat_map(|l| {
                l.entities.iter().flat_map(move |e| {
                    e.samples
                        .iter()
                        .filter_map(move |s| s.image_url.clone().map(|u| (l.lib_name.clone(), u)))
                })
            })
            .collect();
        all.sort();
        all
    };
    let from_csv = World::new(SandboxConfig::for_tests());
    let csv = gbk_csv(&from_csv);
    let out = import(&from_csv, &csv, &["--target", "ice"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let expected = samples(&from_csv);
    assert_eq!(expected.len(), 6, "{expected:?}");
    let from_xlsx = World::new(SandboxConfig::for_tests());
    let book = xlsx(&from_xlsx);
    let out = import(&from_xlsx, &book, &["--target", "ice"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(samples(&from_xlsx), expected);
}
