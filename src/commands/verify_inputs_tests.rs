use super::*;

#[test]
fn libraries_are_numbered_by_folded_name_as_first_written() {
    let mut index = LibraryIndex::default();
    let numbers: Vec<u32> = ["Staff", "Staff", "guests", " staff", "GUESTS"]
        .into_iter()
        .map(|id| index.of(id))
        .collect();
    assert_eq!(numbers, [0, 0, 1, 0, 1]);
    let written: Vec<(&str, &str)> = index
        .libraries
        .iter()
        .map(|(folded, first)| (folded.as_str(), first.as_str()))
        .collect();
    assert_eq!(written, [("staff", "Staff"), ("guests", "guests")]);
}

#[test]
fn a_person_counts_one_more_face_or_one_fewer_never_below_zero() {
    let mut per_person = KeyMap::default();
    recount(&mut per_person, 7, false);
    recount(&mut per_person, 7, false);
    recount(&mut per_person, 7, true);
    recount(&mut per_person, 8, true);
    assert_eq!((per_person[&7], per_person[&8]), (1, 0));
}
