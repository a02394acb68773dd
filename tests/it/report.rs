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

/// OSS objects in the sandbox: two photos of one person; the manifest also names one the bucket
/// does not hold (the service refuses it too).
const OSS_ROWS: [(&str, &str); 3] = [
    ("p-oss", "oss://media-faces/staff/a.jpg"),
    ("p-oss", "oss://media-faces/staff/b.png"),
    ("p-gone", "oss://media-faces/staff/gone.jpg"),
];

/// Whatever would let a reader of a text open an object or sign as the key's owner.
fn assert_no_secret(what: &str, text: &str) {
    for needle in [
        "x-oss-signature",
        "x-oss-credential",
        "Signature=",
        "OSSAccessKeyId",
        face_enroll::sandbox::DEFAULT_ACCESS_KEY_SECRET,
    ] {
        assert!(!text.contains(needle), "{what} holds {needle}:\n{text}");
    }
}

/// A run on `target` of the `oss://` rows, then the manifest with two local photos added that
/// no run uploaded (a PNG, and a text file named .jpg): (world, manifest, the objects' bytes).
fn imported_from_oss(target: &str) -> (World, PathBuf, HashMap<String, Vec<u8>>) {
    let world = World::new(SandboxConfig::for_tests());
    let mut objects = HashMap::new();
    objects.insert(
        OSS_ROWS[0].1.to_string(),
        picture(320, 240, image::ImageFormat::Jpeg),
    );
    objects.insert(
        OSS_ROWS[1].1.to_string(),
        picture(240, 480, image::ImageFormat::Png),
    );
    for (address, bytes) in &objects {
        let key = address.strip_prefix("oss://media-faces/").unwrap();
        world
            .sandbox
            .admin_put_object("media-faces", key, bytes)
            .unwrap();
    }
    let mut body = String::from(HEADER);
    for (person, url) in OSS_ROWS {
        body.push_str(&format!("lib,{person},Name {person},{url}\n"));
    }
    let manifest = world.manifest("faces.csv", &body);
    let base = world.sandbox.base_url();
    let run = world.run(&manifest, &["--target", target, "--oss-endpoint", &base]);
    assert_eq!(run.status.code(), Some(1), "{}", stderr(&run));
    // Local photos no run has uploaded: a run would refuse the manifest without --upload-to.
    std::fs::create_dir(world.path("photos")).unwrap();
    std::fs::write(
        world.path("photos/local.png"),
        picture(100, 50, image::ImageFormat::Png),
    )
    .unwrap();
    std::fs::write(world.path("photos/notes.jpg"), "not a photo").unwrap();
    body.push_str("lib,p-local,Local,photos/local.png\nlib,p-local,Local,photos/notes.jpg\n");
    std::fs::write(&manifest, body).unwrap();
    (world, manifest, objects)
}

/// `report` with the run's connection and OSS flags (and the debug log on), its output, and
/// the page.
fn report_oss(
    world: &World,
    manifest: &Path,
    target: &str,
    extra: &[&str],
) -> (std::process::Output, String) {
    let out = world.path("report.html");
    let base = world.sandbox.base_url();
    let mut args = vec![
        "report",
        manifest.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--target",
        target,
        "--endpoint",
        &base,
        "--oss-endpoint",
        &base,
    ];
    args.extend_from_slice(extra);
    let done = world
        .command(&args)
        .env("FACE_ENROLL_LOG", "debug")
        .output()
        .unwrap();
    assert_eq!(done.status.code(), Some(0), "{}", stderr(&done));
    (done, std::fs::read_to_string(&out).unwrap())
}

/// The width and height of the JPEG a `data:` URI holds.
fn inlined_size(src: &str) -> (u32, u32) {
    use base64::Engine;
    let b64 = src.strip_prefix("data:image/jpeg;base64,").unwrap();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    let img = image::load_from_memory(&bytes).unwrap();
    (img.width(), img.height())
}

fn oss_photos_are_inlined_through_signed_gets_and_local_photos_are_pending(target: &str) {
    let (world, manifest, _) = imported_from_oss(target);
    let (done, page) = report_oss(&world, &manifest, target, &[]);
    let html = Html::parse_document(&page);
    let shown = shown_by_line(&html);
    assert_eq!(shown.len(), 5);
    // Each object read whole through its signed GET and shrunk to 160 px on its longer side.
    assert_eq!(shown[&2].status, "registered");
    assert_eq!(inlined_size(shown[&2].img.as_deref().unwrap()), (160, 120));
    assert_eq!(inlined_size(shown[&3].img.as_deref().unwrap()), (80, 160));
    // The object the bucket does not hold: kept back by the run's pre-flight (on by default for
    // oss:// rows), and OSS's answer in its place.
    assert_eq!(shown[&4].status, "invalid");
    assert!(shown[&4].img.is_none());
    assert!(
        shown[&4].nothumb.contains("HTTP 404") && shown[&4].nothumb.contains("NoSuchKey"),
        "{}",
        shown[&4].nothumb
    );
    // A local photo an upload would take is pending, its thumbnail read from disk; a file that
    // is no photo is invalid, with the upload's reason.
    assert_eq!(shown[&5].status, "pending");
    assert!(
        shown[&5].reason.contains("not uploaded yet"),
        "{}",
        shown[&5].reason
    );
    assert_eq!(inlined_size(shown[&5].img.as_deref().unwrap()), (160, 80));
    assert_eq!(shown[&6].status, "invalid");
    assert!(
        shown[&6].reason.contains("not a JPEG or PNG"),
        "{}",
        shown[&6].reason
    );
    assert!(shown[&6].img.is_none());
    // Nothing in the page points outside it, and no signature is in it or in the output.
    for element in html.select(&select("[src], [href]")) {
        let value = element.value();
        if let Some(src) = value.attr("src") {
            assert!(src.starts_with("data:"), "src {src}");
        }
        if let Some(href) = value.attr("href") {
            assert!(href.starts_with('#'), "href {href}");
        }
    }
    assert_no_secret("the page", &page);
    // The log at its most talkative (debug) names the credentials' source, never a link.
    let printed = format!("{}{}", String::from_utf8_lossy(&done.stdout), stderr(&done));
    assert!(printed.contains("credentials"), "{printed}");
    assert_no_secret("the report's output", &printed);
}

#[test]
fn embed_inlines_oss_photos_read_through_signed_gets_on_mts() {
    oss_photos_are_inlined_through_signed_gets_and_local_photos_are_pending("mts");
}

#[test]
fn embed_inlines_oss_photos_read_through_signed_gets_on_ice() {
    oss_photos_are_inlined_through_signed_gets_and_local_photos_are_pending("ice");
}

/// A GET of `url` (plain http on loopback, HTTP/1.0 so the body is not chunked): status, body.
fn http_get(url: &str) -> (u16, Vec<u8>) {
    let parsed = reqwest::Url::parse(url).unwrap();
    assert!(matches!(parsed.host_str(), Some("127.0.0.1")), "{url}");
    let address = format!("127.0.0.1:{}", parsed.port().unwrap());
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let target = match parsed.query() {
        Some(query) => format!("{}?{query}", parsed.path()),
        None => parsed.path().to_string(),
    };
    write!(
        stream,
        "GET {target} HTTP/1.0\r\nHost: {}\r\n\r\n",
        parsed.authority()
    )
    .unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).unwrap();
    let end = answer.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&answer[..end]).into_owned();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, answer[end + 4..].to_vec())
}

#[test]
fn link_mode_writes_oss_links_the_sandbox_serves_and_says_until_when_they_work() {
    let (world, manifest, objects) = imported_from_oss("mts");
    let (done, page) = report_oss(
        &world,
        &manifest,
        "mts",
        &["--thumbnails", "link", "--link-ttl", "10m"],
    );
    let html = Html::parse_document(&page);
    let shown = shown_by_line(&html);
    let until = html
        .select(&select("time#links-until"))
        .next()
        .expect("the page says until when its links work");
    let until = until.value().attr("datetime").unwrap();
    for (line, (_, address)) in (2u64..).zip(OSS_ROWS) {
        let link = shown[&line].img.as_deref().unwrap();
        let query: HashMap<String, String> = reqwest::Url::parse(link)
            .unwrap()
            .query_pairs()
            .into_owned()
            .collect();
        assert_eq!(query["x-oss-expires"], "600", "{link}");
        // Signed now for ten minutes: the page's time is the link's own expiry.
        let format =
            time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
        let signed = time::PrimitiveDateTime::parse(&query["x-oss-date"], &format)
            .unwrap()
            .assume_utc();
        let expires = signed + time::Duration::seconds(600);
        let said =
            time::OffsetDateTime::parse(until, &time::format_description::well_known::Rfc3339)
                .unwrap();
        assert!(
            (expires - said).whole_seconds().abs() <= 1,
            "{until} vs {expires}"
        );
        // The sandbox's OSS verifies the signature and serves the object (or says it has none).
        let (status, body) = http_get(link);
        match objects.get(address) {
            Some(bytes) => assert_eq!((status, &body), (200, bytes), "{address}"),
            None => assert_eq!(status, 404, "{address}"),
        }
        // The text of the page still names the object, not the link.
        assert!(shown[&line].nothumb.is_empty());
    }
    assert!(
        shown[&5].nothumb.contains("not linked"),
        "{}",
        shown[&5].nothumb
    );
    let printed = format!("{}{}", String::from_utf8_lossy(&done.stdout), stderr(&done));
    assert_no_secret("the report's output", &printed);
}

#[test]
fn with_the_built_in_sandboxs_ledger_oss_photos_say_where_to_point_and_the_page_is_written() {
    let world = World::new(SandboxConfig::for_tests());
    let mut body = String::from(HEADER);
    for (person, url) in OSS_ROWS {
        body.push_str(&format!("lib,{person},Name {person},{url}\n"));
    }
    let manifest = world.manifest("faces.csv", &body);
    for mode in ["embed", "link"] {
        let (page, _) = report(&world, &manifest, &["--sandbox", "--thumbnails", mode]);
        let shown = shown_by_line(&Html::parse_document(&page));
        assert_eq!(shown.len(), OSS_ROWS.len());
        for s in shown.values() {
            assert_eq!(s.status, "pending");
            assert!(s.img.is_none());
            assert!(
                s.nothumb.contains("standalone sandbox"),
                "{mode}: {}",
                s.nothumb
            );
        }
    }
}
