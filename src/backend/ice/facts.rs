//! ICE custom recognition libraries (api-notes §2) as this tool maps a manifest onto them:
//! `category_id` names a library, `person_id` an entity, each `image_url` becomes a sample.
//! Holds the ICE limits, the row check the planner applies, and paging over list calls; the
//! `lib` commands live in `commands`.

use std::future::Future;

use crate::api::Page;
use crate::image::fold_id;
use crate::manifest::Row;
use crate::plan::Rules;

/// `LibName` and `EntityName`: at most 64 bytes of UTF-8.
pub const MAX_NAME_BYTES: usize = 64;
/// `LibDescription`: at most 128 bytes of UTF-8.
pub const MAX_DESCRIPTION_BYTES: usize = 128;
/// `EntityInfo`: JSON text of at most 256 bytes.
pub const MAX_ENTITY_INFO_BYTES: usize = 256;
/// The account's budget for ICE calls, and the `run --target ice` default `--qps`.
pub const DEFAULT_QPS: u32 = 50;
/// The largest page the list calls serve.
pub const PAGE_SIZE: u32 = 50;
/// A listing longer than this many pages is refused rather than followed forever.
const MAX_PAGES: u32 = 100_000;

/// What `run --target ice` writes into an entity's `EntityInfo`: `{"name":"…"}`, or nothing.
pub fn entity_info(person_name: Option<&str>) -> Option<String> {
    person_name.map(|name| serde_json::json!({ "name": name }).to_string())
}

/// The planning rules of the ICE target: no per-person limit; names and `EntityInfo` must fit.
pub fn plan_rules() -> Rules {
    Rules {
        max_images_per_person: None,
        check_row: Some(check_row),
    }
}

/// A manifest row that ICE would refuse: a library or entity name over 64 bytes, or a
/// person_name whose `EntityInfo` exceeds 256 bytes.
pub fn check_row(row: &Row) -> Option<(&'static str, String)> {
    for (column, value, what) in [
        ("category_id", &row.category_id, "library"),
        ("person_id", &row.person_id, "entity"),
    ] {
        if value.len() > MAX_NAME_BYTES {
            return Some((
                column,
                format!(
                    "{column} is {} bytes of UTF-8; an ICE {what} name is at most {MAX_NAME_BYTES}",
                    value.len()
                ),
            ));
        }
    }
    let info = entity_info(row.person_name.as_deref())?;
    (info.len() > MAX_ENTITY_INFO_BYTES).then(|| {
        (
            "person_name",
            format!(
                "person_name makes EntityInfo {} bytes of JSON; ICE takes at most \
                 {MAX_ENTITY_INFO_BYTES}",
                info.len()
            ),
        )
    })
}

/// Checks `lib create`'s name and description before anything is sent (sizes in UTF-8 bytes).
pub fn check_lib_fields(
    name: &str,
    description: Option<&str>,
) -> Result<(), crate::exit::UsageError> {
    if name.is_empty() || name.len() > MAX_NAME_BYTES {
        return Err(crate::exit::UsageError(format!(
            "--name is {} bytes of UTF-8; a library name is 1 to {MAX_NAME_BYTES} bytes",
            name.len()
        )));
    }
    if let Some(text) = description
        && text.len() > MAX_DESCRIPTION_BYTES
    {
        return Err(crate::exit::UsageError(format!(
            "--description is {} bytes of UTF-8; at most {MAX_DESCRIPTION_BYTES}",
            text.len()
        )));
    }
    Ok(())
}

/// Names as the manifest compares ids: trimmed, case-folded.
pub fn same_name(a: &str, b: &str) -> bool {
    a == b || fold_id(a) == fold_id(b)
}

/// Every item of a paged listing, fetching page 1, 2, … until `TotalCount` items are in or a
/// page comes back short. Bounded: at most `MAX_PAGES` pages.
pub async fn all_pages<T, E, F, Fut>(mut fetch: F) -> Result<Vec<T>, E>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<Page<T>, E>>,
{
    let mut items = Vec::new();
    for number in 1..=MAX_PAGES {
        let page = fetch(number).await?;
        let short = (page.items.len() as u32) < PAGE_SIZE;
        let total = page.total_count;
        items.extend(page.items);
        if short || items.len() as u64 >= total {
            break;
        }
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(category: &str, person: &str, name: Option<&str>) -> Row {
        Row {
            line: 2,
            category_id: category.into(),
            person_id: person.into(),
            person_name: name.map(str::to_string),
            image: crate::image::Image::at("https://x/1.jpg"),
        }
    }

    #[test]
    fn entity_info_is_json_with_the_name_unescaped() {
        assert_eq!(
            entity_info(Some("李伟")).as_deref(),
            Some(r#"{"name":"李伟"}"#)
        );
        assert_eq!(entity_info(None), None);
    }

    #[test]
    fn names_are_counted_in_utf8_bytes_not_characters() {
        let cjk_22 = "伟".repeat(22); // 66 bytes, 22 characters
        assert!(check_row(&row("lib", &"a".repeat(64), None)).is_none());
        let (column, reason) = check_row(&row("lib", &cjk_22, None)).unwrap();
        assert_eq!(column, "person_id");
        assert!(reason.contains("66 bytes"), "{reason}");
        let (column, _) = check_row(&row(&"b".repeat(65), "p", None)).unwrap();
        assert_eq!(column, "category_id");
        let (column, _) = check_row(&row("lib", "p", Some(&"n".repeat(250)))).unwrap();
        assert_eq!(column, "person_name");
    }

    #[test]
    fn lib_fields_are_checked_before_sending() {
        assert!(check_lib_fields("faces", Some("staff")).is_ok());
        assert!(check_lib_fields("", None).is_err());
        assert!(check_lib_fields(&"x".repeat(65), None).is_err());
        assert!(check_lib_fields("x", Some(&"d".repeat(129))).is_err());
    }

    #[tokio::test]
    async fn paging_stops_at_the_total_or_a_short_page() {
        let pages = |total: u64| {
            move |n: u32| async move {
                let start = u64::from(n - 1) * u64::from(PAGE_SIZE);
                let items: Vec<u64> = (start..total.min(start + u64::from(PAGE_SIZE))).collect();
                Ok::<_, ()>(Page {
                    items,
                    page_number: n,
                    page_size: PAGE_SIZE,
                    total_count: total,
                })
            }
        };
        assert_eq!(all_pages(pages(120)).await.unwrap().len(), 120);
        assert_eq!(all_pages(pages(100)).await.unwrap().len(), 100);
        assert_eq!(all_pages(pages(0)).await.unwrap().len(), 0);
    }

    #[test]
    fn an_id_too_long_for_both_targets_is_refused_with_ices_own_limit_under_ice() {
        use crate::ledger::Replay;
        use crate::manifest::Reader;
        let body = format!(
            "category_id,person_id,image_url\nlib,{},https://x.example.com/a.jpg\n",
            "p".repeat(130)
        );
        let reader = Reader::from_reader(
            std::path::Path::new("m.csv"),
            std::io::Cursor::new(body.into_bytes()),
        )
        .unwrap();
        let plan =
            crate::plan::plan_with(reader, &Replay::default(), Default::default(), plan_rules())
                .unwrap();
        let reason = &plan.rejected[0].reason;
        assert!(reason.contains("at most 64"), "{reason}");
        assert!(!reason.contains("120"), "{reason}");
    }
}
