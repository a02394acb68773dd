//! `face-enroll report` end to end: a run against the sandbox (with faults, a refused photo,
//! over-limit and invalid rows) whose photos a small loopback web server really serves, then the
//! page parsed with an HTML parser and checked row by row against the manifest and against what
//! the sandbox holds.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use face_enroll::sandbox::{FaultRates, SandboxConfig};
use scraper::{ElementRef, Html, Selector};

use crate::common::*;

/// A PNG or JPEG of one colour.
fn picture(width: u32, height: u32, format: image::ImageFormat) -> Vec<u8> {
    let img = image::RgbImage::from_pixel(width, height, image::Rgb([90, 140, 200]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, format).unwrap();
    out.into_inner()
}

/// A web server on 127.0.0.1:0 serving photos by path (anything else: 404). It answers at
/// most `requests` requests, then its thread ends.
fn photo_server(photos: HashMap<String, Vec<u8>>, requests: usize) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming().take(requests) {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(5)));
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            // The request head only (GET has no body), 16 KiB at most.
            while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 16 << 10 {
                match stream.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let head = String::from_utf8_lossy(&request);
            let path = head.split_whitespace().nth(1).unwrap_or("/").to_string();
            let answer = match photos.get(&path) {
                Some(body) => {
                    let mut a = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    )
                    .into_bytes();
                    a.extend_from_slice(body);
                    a
                }
                None => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .to_vec(),
            };
            let _ = stream.write_all(&answer);
        }
    });
    base
}

/// One manifest row as written.
struct Row {
    line: u64,
    person: String,
    name: String,
    url: String,
}

const HEADER: &str = "category_id,person_id,person_name,image_url\n";

fn csv_cell(text: &str) -> String {
    format!("\"{}\"", text.replace('"', "\"\""))
}

/// The manifest: a person whose photos all go in, one whose first photo the service refuses (its
/// name is markup), one with twelve photos (two over the limit), an invalid row, a photo the
/// server does not have, bytes that are no image.
fn import_manifest(base: &str) -> (String, Vec<Row>) {
    let mut rows = Vec::new();
    let mut add = |person: &str, name: &str, url: String| {
        rows.push(Row {
            line: rows.len() as u64 + 2,
            person: person.into(),
            name: name.into(),
            url,
        })
    };
    add("p-ok", "Ok Person", format!("{base}/ok-1.png"));
    add("p-ok", "Ok Person", format!("{base}/ok-2.jpg"));
    add("p-ok", "Ok Person", format!("{base}/broken.jpg"));
    add("p-ok", "Ok Person", format!("{base}/gone.jpg"));
    for i in 0..12 {
        add("p-many", "李 Many", format!("{base}/many-{i:02}.png"));
    }
    add(
        "p-bad",
        "<script>alert(1)</script>",
        format!("{base}/noface-1.png"),
    );
    add(
        "p-bad",
        "<script>alert(1)</script>",
        format!("{base}/ok-3.png"),
    );
    add(
        "p-ok",
        "Ok Person",
        "ftp://files.example.com/x.jpg".to_string(),
    );
    let mut body = String::from(HEADER);
    for r in &rows {
        body.push_str(&format!(
            "lib,{},{},{}\n",
            r.person,
            csv_cell(&r.name),
            r.url
        ));
    }
    (body, rows)
}

fn photos_served() -> HashMap<String, Vec<u8>> {
    let png = picture(320, 240, image::ImageFormat::Png);
    let jpeg = picture(200, 300, image::ImageFormat::Jpeg);
    let mut photos = HashMap::new();
    for path in ["/ok-1.png", "/ok-3.png", "/noface-1.png"] {
        photos.insert(path.to_string(), png.clone());
    }
    photos.insert("/ok-2.jpg".to_string(), jpeg);
    for i in 0..12 {
        photos.insert(format!("/many-{i:02}.png"), png.clone());
    }
    photos.insert(
        "/broken.jpg".to_string(),
        b"<html>an error page</html>".to_vec(),
    );
    photos
}

/// A world whose sandbox fails a share of calls (retried), and the run of the manifest in it.
fn imported() -> (World, PathBuf, Vec<Row>) {
    let faults = FaultRates {
        error_before: 0.15,
        html_before: 0.05,
        ..FaultRates::default()
    };
    let world = World::new(SandboxConfig {
        faults,
        ..SandboxConfig::for_tests()
    });
    let base = photo_server(photos_served(), 200);
    let (body, rows) = import_manifest(&base);
    let manifest = world.manifest("faces.csv", &body);
    let run = world.run(&manifest, &[]);
    assert_eq!(run.status.code(), Some(1), "{}", stderr(&run));
    (world, manifest, rows)
}

fn report(world: &World, manifest: &Path, extra: &[&str]) -> (String, PathBuf) {
    let out = world.path("report.html");
    let mut args = vec![
        "report",
        manifest.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let done = world.command(&args).output().unwrap();
    assert_eq!(done.status.code(), Some(0), "{}", stderr(&done));
    (std::fs::read_to_string(&out).unwrap(), out)
}

fn select(s: &str) -> Selector {
    Selector::parse(s).unwrap()
}

fn text(e: ElementRef<'_>, s: &str) -> String {
    e.select(&select(s))
        .next()
        .map(|n| n.text().collect::<String>())
        .unwrap_or_default()
}

/// A photo as the page shows it.
struct Shown {
    person: String,
    name: String,
    status: String,
    reason: String,
    code: String,
    nothumb: String,
    img: Option<String>,
}

/// Every photo of the page, by manifest line (a line twice is a failure).
fn shown_by_line(html: &Html) -> HashMap<u64, Shown> {
    let mut by_line = HashMap::new();
    for card in html.select(&select("article.person")) {
        let person = text(card, ".pid");
        let name = text(card, ".name");
        for photo in card.select(&select("li.photo")) {
            let line: u64 = photo.value().attr("data-line").unwrap().parse().unwrap();
            let shown = Shown {
                person: person.clone(),
                name: name.clone(),
                status: photo.value().attr("data-status").unwrap().to_string(),
                reason: text(photo, ".message"),
                code: text(photo, ".code"),
                nothumb: text(photo, ".nothumb"),
                img: photo
                    .select(&select("img"))
                    .next()
                    .and_then(|i| i.value().attr("src").map(str::to_string)),
            };
            assert!(by_line.insert(line, shown).is_none(), "line {line} twice");
        }
    }
    by_line
}

#[test]
fn every_row_appears_once_with_the_status_the_server_and_the_rules_give_it() {
    let (world, manifest, rows) = imported();
    let (page, out) = report(&world, &manifest, &[]);
    let html = Html::parse_document(&page);
    let shown = shown_by_line(&html);
    assert_eq!(shown.len(), rows.len());
    let on_server: HashSet<String> = world.faces().into_iter().map(|f| f.2).collect();
    let mut seen_many = 0;
    for row in &rows {
        let s = &shown[&row.line];
        assert_eq!(
            (&s.person, &s.name),
            (&row.person, &row.name),
            "line {}",
            row.line
        );
        let expected = if row.url.starts_with("ftp:") {
            "invalid"
        } else if row.url.contains("noface") {
            "failed"
        } else if row.person == "p-many" && {
            seen_many += 1;
            seen_many > 10
        } {
            "skipped"
        } else {
            "registered"
        };
        assert_eq!(s.status, expected, "line {} ({})", row.line, row.url);
        assert_eq!(on_server.contains(&row.url), expected == "registered");
        match expected {
            "failed" => {
                assert_eq!(s.code, "InvalidParameter.ImageUrl");
                assert!(
                    s.reason.contains("exactly one frontal face"),
                    "{}",
                    s.reason
                );
            }
            "skipped" => assert!(s.reason.contains("10 images"), "{}", s.reason),
            "invalid" => assert!(s.reason.contains("http"), "{}", s.reason),
            _ => {}
        }
    }
    // Thumbnails: every photo the web server has is inlined; the others say why not.
    for row in &rows {
        let s = &shown[&row.line];
        match row.url.rsplit('/').next().unwrap() {
            "broken.jpg" => assert!(s.nothumb.contains("not a JPEG or PNG"), "{}", s.nothumb),
            "gone.jpg" => assert!(s.nothumb.contains("HTTP 404"), "{}", s.nothumb),
            "x.jpg" => assert!(s.nothumb.contains("no http(s) URL"), "{}", s.nothumb),
            _ => assert!(
                s.img
                    .as_deref()
                    .is_some_and(|src| src.starts_with("data:image/jpeg;base64,")),
                "line {}",
                row.line
            ),
        }
    }
    // The header's figures are the rows'.
    let figure = |id: &str| text(html.root_element(), &format!("#fig-{id}"));
    assert_eq!(figure("rows"), rows.len().to_string());
    assert_eq!(figure("skipped"), "2");
    assert_eq!(figure("failed"), "1");
    // One run registered: one chart, with retries marked when the ledger says some took them.
    let charts: Vec<ElementRef<'_>> = html.select(&select("section.runs svg.rate")).collect();
    assert_eq!(charts.len(), 1);
    let retried = ledger_lines(&world.path("faces.ledger.jsonl"))
        .iter()
        .filter(|l| l["status"] == "registered" && l["attempts"].as_u64().is_some_and(|n| n > 1))
        .count();
    let marks = charts[0].select(&select("rect.retry")).count();
    assert_eq!(
        marks > 0,
        retried > 0,
        "{retried} registrations after retries"
    );
    assert!(charts[0].select(&select("rect.bar")).count() > 0);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&out).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn the_embedded_page_points_nowhere_outside_itself_and_names_are_text() {
    let (world, manifest, _) = imported();
    let (page, _) = report(&world, &manifest, &[]);
    let html = Html::parse_document(&page);
    let mut images = 0;
    for element in html.select(&select("[src], [href], link, iframe, object, embed")) {
        let value = element.value();
        if let Some(src) = value.attr("src") {
            assert!(src.starts_with("data:"), "src {src}");
            images += 1;
        }
        if let Some(href) = value.attr("href") {
            assert!(href.starts_with('#'), "href {href}");
        }
        assert!(!matches!(
            value.name(),
            "link" | "iframe" | "object" | "embed"
        ));
    }
    assert!(images >= 14, "{images} images inlined");
    // One script, the page's own; the name with markup is text in its card.
    assert_eq!(html.select(&select("script")).count(), 1);
    let bad = html
        .select(&select("article.person"))
        .find(|c| text(*c, ".pid") == "p-bad")
        .unwrap();
    assert_eq!(text(bad, ".name"), "<script>alert(1)</script>");
    let policy = html
        .select(&select("meta[http-equiv=Content-Security-Policy]"))
        .next()
        .unwrap();
    assert!(
        policy
            .value()
            .attr("content")
            .unwrap()
            .contains("default-src 'none'")
    );
}

#[test]
fn without_thumbnails_there_is_no_image_and_persons_with_problems_keep_manifest_order() {
    let (world, manifest, _) = imported();
    let (page, _) = report(&world, &manifest, &["--thumbnails", "none"]);
    let html = Html::parse_document(&page);
    let order: Vec<String> = html
        .select(&select("section.library article.person"))
        .map(|c| text(c, ".pid"))
        .collect();
    // p-ok (an invalid row) and p-many (two over the limit) have problems too: manifest order
    // among them; p-bad is last in the manifest but before no card without a problem.
    assert_eq!(order, ["p-ok", "p-many", "p-bad"]);
    let problem: Vec<&str> = html
        .select(&select("article.person"))
        .map(|c| c.value().attr("data-problem").unwrap())
        .collect();
    assert_eq!(problem, ["1", "1", "1"]);
    assert_eq!(html.select(&select("img")).count(), 0);
}

#[test]
fn a_person_with_a_refused_photo_is_listed_first_and_linked_thumbnails_use_the_manifest_url() {
    let world = World::new(SandboxConfig::for_tests());
    let base = "https://img.example.com";
    let body = format!(
        "{HEADER}lib,p-fine,Fine,{base}/fine-1.jpg\nlib,p-fine,Fine,{base}/fine-2.jpg\n\
         lib,p-refused,Refused,{base}/noface.jpg\n"
    );
    let manifest = world.manifest("faces.csv", &body);
    let run = world.run(&manifest, &[]);
    assert_eq!(run.status.code(), Some(1), "{}", stderr(&run));
    let (page, _) = report(&world, &manifest, &["--thumbnails", "link"]);
    let html = Html::parse_document(&page);
    let order: Vec<String> = html
        .select(&select("article.person"))
        .map(|c| text(c, ".pid"))
        .collect();
    assert_eq!(order[0], "p-refused");
    assert_eq!(order.last().unwrap(), "p-fine");
    let srcs: Vec<&str> = html
        .select(&select("img"))
        .filter_map(|i| i.value().attr("src"))
        .collect();
    assert_eq!(
        srcs,
        [
            format!("{base}/noface.jpg"),
            format!("{base}/fine-1.jpg"),
            format!("{base}/fine-2.jpg")
        ]
    );
}

#[test]
fn an_output_that_is_a_symbolic_link_is_refused_and_nothing_is_written_through_it() {
    let world = World::new(SandboxConfig::for_tests());
    let manifest = world.manifest(
        "faces.csv",
        &format!("{HEADER}lib,p,P,https://img.example.com/a.jpg\n"),
    );
    let target = world.path("elsewhere.html");
    std::fs::write(&target, "keep").unwrap();
    let link = world.path("report.html");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let done = world
        .command(&[
            "report",
            manifest.to_str().unwrap(),
            "-o",
            link.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(done.status.code(), Some(2), "{}", stderr(&done));
    assert!(stderr(&done).contains("symbolic link"));
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
}

#[test]
fn a_photo_a_sync_removed_is_shown_in_its_persons_card_without_a_line() {
    let world = World::new(SandboxConfig::for_tests());
    let base = "https://img.example.com";
    let both = format!("{HEADER}lib,p1,One,{base}/1a.jpg\nlib,p1,One,{base}/1b.jpg\n");
    let manifest = world.manifest("faces.csv", &both);
    assert_eq!(world.run(&manifest, &[]).status.code(), Some(0));
    std::fs::write(&manifest, format!("{HEADER}lib,p1,One,{base}/1a.jpg\n")).unwrap();
    let synced = world.run(&manifest, &["--sync"]);
    assert_eq!(synced.status.code(), Some(0), "{}", stderr(&synced));
    let on_server: Vec<String> = world.faces().into_iter().map(|f| f.2).collect();
    assert_eq!(on_server, [format!("{base}/1a.jpg")]);
    let (page, _) = report(&world, &manifest, &["--thumbnails", "none"]);
    let html = Html::parse_document(&page);
    let cards: Vec<ElementRef<'_>> = html.select(&select("article.person")).collect();
    assert_eq!(cards.len(), 1);
    let photos: Vec<(String, String, String)> = cards[0]
        .select(&select("li.photo"))
        .map(|p| {
            let v = p.value();
            (
                v.attr("data-line").unwrap().to_string(),
                v.attr("data-status").unwrap().to_string(),
                text(p, ".url"),
            )
        })
        .collect();
    assert_eq!(
        photos,
        [
            ("2".into(), "registered".into(), format!("{base}/1a.jpg")),
            (String::new(), "removed".into(), format!("{base}/1b.jpg")),
        ]
    );
    assert!(text(cards[0], "li.photo[data-status=removed] .note").contains("not in this manifest"));
    assert_eq!(text(html.root_element(), "#fig-rows"), "1");
    assert_eq!(text(html.root_element(), "#fig-removed"), "1");
}
