//! The HTML report of an import: the page's model ([`model`]: libraries, persons, photos with a
//! badge and a reason) and its one self-contained file — inline style and script only, every text escaped,
//! a Content-Security-Policy that lets the page load nothing from anywhere.
//!
//! `report_html` knows nothing of the ledger or the manifest: `commands::report` builds the
//! [`Page`]; [`thumbs`] fetches and shrinks the photos.

mod chart;
mod model;
mod thumbs;

use std::fmt::Write as _;
use std::io::Write;

pub use chart::Rate;
use model::utc_text;
pub use model::{Badge, Figures, Library, Page, Person, Photo, RunLine, RunSpan, ThumbMode};
pub use thumbs::{Source, Thumb, Thumbs, fetch_thumbnails, sign_links};

const STYLE: &str = include_str!("page.css");
const SCRIPT: &str = include_str!("page.js");

/// `text` safe in HTML text and in a quoted attribute value.
pub fn escape(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains(['&', '<', '>', '"', '\'']) {
        return text.into();
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out.into()
}

/// The CSP source of an inline element: its SHA-256, so only this exact text may run.
fn hash_source(text: &str) -> String {
    use base64::Engine;
    use sha2::Digest;
    let digest = sha2::Sha256::digest(text.as_bytes());
    format!(
        "'sha256-{}'",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

/// Writes the page.
pub fn render(
    page: &Page,
    thumbs: &Thumbs,
    mode: ThumbMode,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    let images = match mode {
        ThumbMode::Link => "data: https: http:",
        ThumbMode::Embed | ThumbMode::None => "data:",
    };
    write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; \
         img-src {images}; style-src {}; script-src {}; form-action 'none'; base-uri 'none'\">\n\
         <meta name=\"referrer\" content=\"no-referrer\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>face-enroll report: {}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n",
        hash_source(STYLE),
        hash_source(SCRIPT),
        escape(&page.manifest),
    )?;
    let capped = match mode {
        ThumbMode::Embed => page.capped_thumbnails(thumbs),
        ThumbMode::Link | ThumbMode::None => 0,
    };
    write_header(page, mode, capped, thumbs.links_until(), out)?;
    write_filters(page, out)?;
    out.write_all(b"<main>\n")?;
    for (index, library) in page.libraries.iter().enumerate() {
        write_library(index, library, thumbs, mode, out)?;
    }
    out.write_all(b"</main>\n")?;
    write!(out, "<script>{SCRIPT}</script>\n</body>\n</html>\n")
}

fn write_header(
    page: &Page,
    mode: ThumbMode,
    capped: usize,
    links_until: Option<time::OffsetDateTime>,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    let f = &page.figures;
    let mut h = String::new();
    let _ = write!(
        h,
        "<header>\n<h1>Import report</h1>\n<dl class=\"facts\">\
         <dt>Target</dt><dd>{}</dd>\
         <dt>Endpoint</dt><dd>{}</dd>\
         <dt>Manifest</dt><dd><code>{}</code></dd>\
         <dt>Ledger</dt><dd><code>{}</code></dd>\
         <dt>Libraries</dt><dd>{}</dd>\
         <dt>Generated</dt><dd>{}</dd>\
         <dt>Thumbnails</dt><dd>{}</dd></dl>\n",
        escape(&page.target),
        escape(page.endpoint.as_deref().unwrap_or("(no run recorded)")),
        escape(&page.manifest),
        escape(&page.ledger),
        page.libraries
            .iter()
            .map(|l| format!("<code>{}</code>", escape(&l.name)))
            .collect::<Vec<_>>()
            .join(", "),
        escape(&page.generated),
        match mode {
            ThumbMode::Embed if capped > 0 => format!(
                "embedded in this file; <b id=\"capped\">{capped}</b> photos without one \
                 (--max-thumbnails reached; problem cards got theirs first)"
            ),
            ThumbMode::Embed => "embedded in this file".to_string(),
            ThumbMode::Link => {
                let web = "linked to the manifest's URLs as written: they load only while those \
                           links work, and a presigned link's signature is in this file";
                match links_until {
                    Some(until) => format!(
                        "{web}. <b>oss:// photos load through links signed for this page, which \
                         work until <time id=\"links-until\" datetime=\"{0}\">{1}</time></b> \
                         (--link-ttl); their signatures are in this file: it lets whoever holds \
                         it see those photos until then",
                        crate::clock::seconds_text(until),
                        utc_text(until),
                    ),
                    None => web.to_string(),
                }
            }
            ThumbMode::None => "none".to_string(),
        }
    );
    let _ = write!(
        h,
        "<section class=\"figures\" aria-label=\"summary\"><p>\
         <b id=\"fig-rows\">{}</b> rows, <b id=\"fig-persons\">{}</b> persons, \
         <b id=\"fig-problem-persons\">{}</b> with a problem.</p><ul>",
        f.rows, f.persons, f.problem_persons
    );
    for badge in Badge::ALL {
        let _ = write!(
            h,
            "<li class=\"fig b-{0}\"><b id=\"fig-{0}\">{1}</b> {2}</li>",
            badge.as_str(),
            f.of(badge),
            badge.label()
        );
    }
    let _ = writeln!(
        h,
        "<li class=\"fig\"><b id=\"fig-copies\">{}</b> late copies removed</li></ul></section>",
        f.copies_removed
    );
    write_reasons(f, &mut h);
    write_runs(page, &mut h);
    h.push_str("</header>\n");
    out.write_all(h.as_bytes())
}

fn write_reasons(f: &Figures, h: &mut String) {
    if f.reasons.is_empty() {
        return;
    }
    let mut reasons: Vec<_> = f.reasons.iter().collect();
    reasons.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    h.push_str(
        "<section class=\"reasons\"><h2>Why photos were not registered</h2><table>\
         <thead><tr><th>Photos</th><th>Status</th><th>Reason</th><th>Code</th></tr></thead><tbody>",
    );
    for ((badge, code, message), n) in reasons {
        let _ = write!(
            h,
            "<tr><td>{n}</td><td><span class=\"badge b-{}\">{}</span></td><td>{}</td>\
             <td><code>{}</code></td></tr>",
            badge.as_str(),
            badge.label(),
            escape(message),
            escape(code)
        );
    }
    h.push_str("</tbody></table></section>\n");
}

fn write_runs(page: &Page, h: &mut String) {
    h.push_str("<section class=\"runs\"><h2>Runs</h2>");
    if page.runs.is_empty() {
        h.push_str("<p>The ledger records no run.</p></section>\n");
        return;
    }
    if page.runs_hidden > 0 {
        let _ = write!(h, "<p>{} earlier runs not listed.</p>", page.runs_hidden);
    }
    h.push_str(
        "<table><thead><tr><th>Run</th><th>Command</th><th>Started</th><th>Ended</th>\
         <th>Outcome</th><th>Exit</th><th>Retries</th><th>Throttled</th>\
         <th>Registrations per second</th></tr></thead><tbody>",
    );
    for line in &page.runs {
        let run = &line.span;
        let cell = |t: &Option<String>| escape(t.as_deref().unwrap_or("–")).into_owned();
        let figure = |n: Option<u64>| n.map_or_else(|| "–".to_string(), |n| n.to_string());
        let _ = write!(
            h,
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(run.run.get(..8).unwrap_or(&run.run)),
            cell(&run.command),
            cell(&run.started),
            match &run.ended {
                Some(ended) => escape(ended).into_owned(),
                None => "no end record (running, or killed)".to_string(),
            },
            cell(&run.outcome),
            run.exit_code
                .map_or_else(|| "–".to_string(), |c| c.to_string()),
            figure(line.retries),
            figure(line.throttled),
            line.rate.as_ref().map_or_else(String::new, chart::svg),
        );
    }
    h.push_str("</tbody></table></section>\n");
}

/// The filter bar: hidden until the script shows it, so a page read with scripts off shows
/// no control that does nothing.
fn write_filters(page: &Page, out: &mut dyn Write) -> std::io::Result<()> {
    let f = &page.figures;
    let mut h = String::from(
        "<nav id=\"filters\" hidden><span>Show:</span>\
         <button type=\"button\" data-filter=\"all\" aria-pressed=\"true\">all</button>",
    );
    let _ = write!(
        h,
        "<button type=\"button\" data-filter=\"problems\" aria-pressed=\"false\">problems only ({})</button>",
        f.problem_persons
    );
    for badge in Badge::ALL {
        let n = f.of(badge);
        if n > 0 {
            let _ = write!(
                h,
                "<button type=\"button\" data-filter=\"{}\" aria-pressed=\"false\">{} ({n})</button>",
                badge.as_str(),
                badge.label()
            );
        }
    }
    h.push_str(
        "<label>Search <input type=\"search\" id=\"search\" placeholder=\"name, id, URL, reason\" \
         autocomplete=\"off\"></label><span id=\"shown\"></span></nav>\n",
    );
    out.write_all(h.as_bytes())
}

fn write_library(
    index: usize,
    library: &Library,
    thumbs: &Thumbs,
    mode: ThumbMode,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    let photos: usize = library.persons.iter().map(|p| p.photos.len()).sum();
    writeln!(
        out,
        "<section class=\"library\" id=\"lib-{index}\" data-library=\"{}\">\n\
         <h2>Library <code>{}</code> <small>{} persons, {photos} photos</small></h2>",
        escape(&library.name),
        escape(&library.name),
        library.persons.len(),
    )?;
    let mut card = String::new();
    let (mut hidden, mut hidden_photos) = (0usize, 0usize);
    for person in &library.persons {
        if person.not_drawn {
            hidden += 1;
            hidden_photos += person.photos.len();
            continue;
        }
        card.clear();
        write_person(person, thumbs, mode, &mut card);
        out.write_all(card.as_bytes())?;
    }
    if hidden > 0 {
        writeln!(
            out,
            "<p class=\"more\">{hidden} more {} ({hidden_photos} {}) without a problem \
             not drawn: <code>--max-cards 0</code> draws every card.</p>",
            if hidden == 1 { "person" } else { "persons" },
            if hidden_photos == 1 {
                "photo"
            } else {
                "photos"
            },
        )?;
    }
    out.write_all(b"</section>\n")
}

fn write_person(person: &Person, thumbs: &Thumbs, mode: ThumbMode, h: &mut String) {
    let mut statuses: Vec<&str> = person.photos.iter().map(|p| p.badge.as_str()).collect();
    statuses.sort_unstable();
    statuses.dedup();
    let mut search = format!(
        "{} {}",
        person.name.as_deref().unwrap_or_default(),
        person.id
    );
    for photo in &person.photos {
        let _ = write!(
            search,
            " {} {}",
            crate::image::shown(&photo.url),
            photo.reason.as_deref().unwrap_or_default()
        );
    }
    let problem = person.has_problem();
    let _ = write!(
        h,
        "<article class=\"person{}\" data-problem=\"{}\" data-statuses=\" {} \" data-search=\"{}\">\n\
         <h3><span class=\"name\">{}</span> <code class=\"pid\">{}</code></h3>\n<ul class=\"photos\">\n",
        if problem { " problem" } else { "" },
        u8::from(problem),
        statuses.join(" "),
        escape(&search.to_lowercase()),
        match &person.name {
            Some(name) => escape(name).into_owned(),
            None => "<i>(no name)</i>".to_string(),
        },
        escape(&person.id),
    );
    for photo in &person.photos {
        write_photo(photo, thumbs, mode, h);
    }
    h.push_str("</ul>\n</article>\n");
}

fn write_img(h: &mut String, url: &str, alt: &str) {
    let _ = write!(
        h,
        "<img src=\"{}\" alt=\"{alt}\" loading=\"lazy\" referrerpolicy=\"no-referrer\">",
        escape(url)
    );
}

fn write_nothumb(h: &mut String, why: &str) {
    let _ = write!(h, "<div class=\"nothumb\">{}</div>", escape(why));
}

fn write_photo(photo: &Photo, thumbs: &Thumbs, mode: ThumbMode, h: &mut String) {
    let badge = photo.badge.as_str();
    let _ = write!(
        h,
        "<li class=\"photo\" data-status=\"{badge}\" data-line=\"{}\">",
        photo.line.map_or_else(String::new, |l| l.to_string())
    );
    let alt = match photo.line {
        Some(line) => format!("photo of line {line}"),
        None => "photo".to_string(),
    };
    match mode {
        ThumbMode::None => {}
        ThumbMode::Link => match thumbs.get(&photo.url) {
            Some(Thumb::Link(url) | Thumb::Image(url)) => write_img(h, url, &alt),
            Some(Thumb::Unreadable(why)) => write_nothumb(h, why),
            None => match thumbs::link(&photo.url, photo.file.as_deref()) {
                Ok(url) => write_img(h, url, &alt),
                Err(why) => write_nothumb(h, &why.to_string()),
            },
        },
        ThumbMode::Embed => match thumbs.get(&photo.url) {
            Some(Thumb::Image(data)) => {
                let _ = write!(h, "<img src=\"{data}\" alt=\"{alt}\">");
            }
            Some(Thumb::Unreadable(why)) => write_nothumb(h, why),
            // Embed mode never writes a link.
            Some(Thumb::Link(_)) => write_nothumb(h, "no thumbnail"),
            None => match photo.source() {
                Some(_) => write_nothumb(h, "no thumbnail: over --max-thumbnails"),
                None => write_nothumb(h, thumbs::NO_SOURCE),
            },
        },
    }
    let _ = write!(
        h,
        "<span class=\"badge b-{badge}\">{}</span>",
        photo.badge.label()
    );
    if photo.reason.is_some() || photo.code.is_some() {
        h.push_str("<p class=\"reason\">");
        if let Some(reason) = &photo.reason {
            let _ = write!(h, "<span class=\"message\">{}</span> ", escape(reason));
        }
        if let Some(code) = &photo.code {
            let _ = write!(h, "<code class=\"code\">{}</code>", escape(code));
        }
        h.push_str("</p>");
    }
    if let Some(note) = &photo.note {
        let _ = write!(h, "<p class=\"note\">{}</p>", escape(note));
    }
    h.push_str("<p class=\"where\">");
    match photo.line {
        Some(line) => {
            let _ = write!(h, "<span class=\"line\">line {line}</span> ");
        }
        None => h.push_str("<span class=\"line\">no line</span> "),
    }
    // A presigned link's signature is a secret: the page names the object, not the link.
    let shown = crate::image::shown(&photo.url);
    let _ = write!(h, "<span class=\"url\">{}</span>", escape(&shown));
    if let Some(id) = &photo.server_id {
        let _ = write!(
            h,
            " <span class=\"id\">id <code>{}</code></span>",
            escape(id)
        );
    }
    if let Some(n) = photo.attempts.filter(|&n| n > 1) {
        let _ = write!(h, " <span class=\"attempts\">{n} attempts</span>");
    }
    h.push_str("</p></li>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn person(id: &str, badges: &[Badge]) -> Person {
        Person {
            id: id.into(),
            photos: badges
                .iter()
                .enumerate()
                .map(|(i, &badge)| Photo {
                    url: format!("https://x.example.com/{id}/{i}.jpg"),
                    badge,
                    ..Photo::default()
                })
                .collect(),
            ..Person::default()
        }
    }

    #[test]
    fn capped_cards_keep_every_problem_and_count_the_rest_and_thumbnails_go_to_problems_first() {
        let ok = Badge::Registered;
        let mut page = Page {
            libraries: vec![
                Library {
                    name: "a".into(),
                    persons: vec![
                        person("a1", &[ok, ok]),
                        person("a2", &[ok]),
                        person("a3", &[ok]),
                    ],
                },
                Library {
                    name: "b".into(),
                    persons: vec![person("b1", &[Badge::Failed, ok]), person("b2", &[ok])],
                },
            ],
            ..Page::default()
        };
        page.cap_cards(1);
        let drawn: Vec<&str> = page
            .libraries
            .iter()
            .flat_map(|l| &l.persons)
            .filter(|p| !p.not_drawn)
            .map(|p| p.id.as_str())
            .collect();
        assert_eq!(drawn, ["a1", "b1"]);
        let urls: Vec<String> = page
            .thumbnail_sources(ThumbMode::Embed, 3)
            .into_iter()
            .map(|(url, _)| url)
            .collect();
        assert_eq!(
            urls,
            [
                "https://x.example.com/b1/0.jpg",
                "https://x.example.com/b1/1.jpg",
                "https://x.example.com/a1/0.jpg"
            ]
        );
        let mut out = Vec::new();
        render(&page, &Thumbs::default(), ThumbMode::None, &mut out).unwrap();
        let html = String::from_utf8(out).unwrap();
        assert_eq!(html.matches("<article").count(), 2);
        assert!(html.contains("2 more persons (2 photos) without a problem"));
        assert!(html.contains("1 more person (1 photo) without a problem"));
        // Drawn photos that got no thumbnail are counted in the header.
        let mut out = Vec::new();
        render(&page, &Thumbs::default(), ThumbMode::Embed, &mut out).unwrap();
        let html = String::from_utf8(out).unwrap();
        assert!(html.contains("<b id=\"capped\">4</b> photos without one"));
    }

    #[test]
    fn a_presigned_links_signature_is_not_written_into_an_embedded_page() {
        let signed = "https://b.oss-cn-shanghai.aliyuncs.com/a.jpg?x-oss-signature-version=\
                      OSS4-HMAC-SHA256&x-oss-credential=LTAIkey&x-oss-expires=600&\
                      x-oss-signature=deadbeef";
        let page = Page {
            libraries: vec![Library {
                name: "lib".into(),
                persons: vec![Person {
                    id: "p".into(),
                    photos: vec![Photo {
                        line: Some(2),
                        url: signed.into(),
                        ..Photo::default()
                    }],
                    ..Person::default()
                }],
            }],
            ..Page::default()
        };
        let mut out = Vec::new();
        render(&page, &Thumbs::default(), ThumbMode::Embed, &mut out).unwrap();
        let html = String::from_utf8(out).unwrap();
        assert!(!html.contains("deadbeef"), "{html}");
        assert!(!html.contains("x-oss-signature"), "{html}");
        assert!(
            html.contains("b.oss-cn-shanghai.aliyuncs.com/a.jpg"),
            "{html}"
        );
    }

    #[test]
    fn every_markup_character_is_escaped_and_plain_text_is_borrowed() {
        assert_eq!(
            escape("<script>alert('x')</script> & \"y\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;y&quot;"
        );
        assert!(matches!(escape("李伟"), std::borrow::Cow::Borrowed(_)));
    }

    #[test]
    fn a_name_with_markup_is_text_on_the_page_and_the_policy_allows_only_its_own_script() {
        let page = Page {
            libraries: vec![Library {
                name: "lib".into(),
                persons: vec![Person {
                    id: "p1".into(),
                    name: Some("<script>alert(1)</script>".into()),
                    photos: vec![Photo {
                        line: Some(2),
                        url: "https://x.example.com/a\"onerror=\"x.jpg".into(),
                        badge: Badge::Failed,
                        ..Photo::default()
                    }],
                    ..Person::default()
                }],
            }],
            ..Page::default()
        };
        let mut out = Vec::new();
        render(&page, &Thumbs::default(), ThumbMode::None, &mut out).unwrap();
        let html = String::from_utf8(out).unwrap();
        assert!(!html.contains("<script>alert"));
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(!html.contains("a\"onerror"));
        assert_eq!(html.matches("<script>").count(), 1);
        assert!(html.contains(&hash_source(SCRIPT)));
    }
}
