//! The keys that identify libraries, persons and images everywhere in the tool: ids folded
//! the way the service compares them (case-insensitive), hashed with xxh3-128.

use xxhash_rust::xxh3::Xxh3Default;

/// The case-insensitive identity of an id: the Unicode lowercase of the trimmed id.
/// The service compares ids without regard to case, so this tool must too.
pub fn fold_id(id: &str) -> String {
    let id = id.trim();
    if id.is_ascii() {
        id.to_ascii_lowercase()
    } else {
        id.to_lowercase()
    }
}

/// The key of a library: xxh3-128 of the folded category id.
pub fn library_key(category_id: &str) -> u128 {
    let mut hasher = Xxh3Default::new();
    update_folded(&mut hasher, category_id);
    hasher.digest128()
}

/// The key of a person: xxh3-128 of `fold(category) + '\0' + fold(person)`.
pub fn person_key(category_id: &str, person_id: &str) -> u128 {
    let mut hasher = Xxh3Default::new();
    update_folded(&mut hasher, category_id);
    hasher.update(b"\0");
    update_folded(&mut hasher, person_id);
    hasher.digest128()
}

/// The key of an image: xxh3-128 of `fold(category) + '\0' + fold(person) + '\0' + identity`.
pub(super) fn image_key(category_id: &str, person_id: &str, identity: &str) -> u128 {
    person_and_image_key(category_id, person_id, identity).1
}

/// The person's and the image's keys at once, folding and hashing the ids once.
pub(super) fn person_and_image_key(
    category_id: &str,
    person_id: &str,
    identity: &str,
) -> (u128, u128) {
    let mut hasher = Xxh3Default::new();
    update_folded(&mut hasher, category_id);
    hasher.update(b"\0");
    update_folded(&mut hasher, person_id);
    let person = hasher.digest128();
    hasher.update(b"\0");
    hasher.update(identity.as_bytes());
    (person, hasher.digest128())
}

/// Feeds `fold_id(id)` to the hasher without allocating for ASCII ids; the streaming digest
/// does not depend on how the input is split, so chunks through a stack buffer are fine.
fn update_folded(hasher: &mut Xxh3Default, id: &str) {
    let id = id.trim();
    let bytes = id.as_bytes();
    // One pass: non-ASCII (0x80 and up) or upper case needs folding.
    if !bytes.iter().any(|&b| b >= 0x80 || b.is_ascii_uppercase()) {
        hasher.update(bytes);
        return;
    }
    if !id.is_ascii() {
        hasher.update(id.to_lowercase().as_bytes());
        return;
    }
    let mut buffer = [0u8; 128];
    for chunk in bytes.chunks(buffer.len()) {
        let folded = &mut buffer[..chunk.len()];
        folded.copy_from_slice(chunk);
        folded.make_ascii_lowercase();
        hasher.update(folded);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xxhash_rust::xxh3::xxh3_128;

    /// The key of an image the way callers ask for it: through its identity.
    fn image_key(category_id: &str, person_id: &str, url: &str) -> u128 {
        crate::image::ImageId::new(url, None).key(category_id, person_id)
    }

    fn person_and_image_key(category_id: &str, person_id: &str, url: &str) -> (u128, u128) {
        crate::image::ImageId::new(url, None).person_and_key(category_id, person_id)
    }

    #[test]
    fn folds_ids_to_unicode_lowercase_after_trimming() {
        assert_eq!(fold_id(" Alice "), "alice");
        assert_eq!(fold_id("ÄRZTE"), "ärzte");
    }

    #[test]
    fn gives_alice_and_alice_lowercase_the_same_keys() {
        assert_eq!(fold_id("Alice"), fold_id("alice"));
        assert_eq!(person_key("Staff", "Alice"), person_key("staff", "alice"));
        assert_eq!(
            image_key("Staff", "Alice", "https://x/a.jpg"),
            image_key("staff", "alice ", " https://x/a.jpg")
        );
        assert_eq!(library_key("STAFF"), library_key("staff"));
        assert_eq!(person_key("Ärzte", "Ö"), person_key("ärzte", "ö"));
    }

    #[test]
    fn gives_different_urls_different_image_keys() {
        assert_ne!(
            image_key("staff", "alice", "https://x/a.jpg"),
            image_key("staff", "alice", "https://x/A.jpg")
        );
        assert_ne!(person_key("staff", "alice"), person_key("staff", "bob"));
        assert_ne!(person_key("ab", "c"), person_key("a", "bc"));
    }

    #[test]
    fn computes_keys_as_one_shot_hashes_of_the_folded_text() {
        let long = "X".repeat(300);
        assert_eq!(library_key(&long), xxh3_128("x".repeat(300).as_bytes()));
        assert_eq!(person_key("Staff", "Bob"), xxh3_128(b"staff\0bob"));
        assert_eq!(
            image_key("Staff", "Bob", "http://h/P.jpg"),
            xxh3_128(b"staff\0bob\0http://h/P.jpg")
        );
    }

    #[test]
    fn person_and_image_keys_at_once_are_the_keys_one_at_a_time() {
        let (person, image) = person_and_image_key("Staff", " Bob", "HTTPS://h/P.jpg?Signature=s");
        assert_eq!(person, person_key("staff", "bob"));
        assert_eq!(image, image_key("staff", "bob", "https://h/P.jpg"));
    }
}
