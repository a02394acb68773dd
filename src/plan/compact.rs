//! The planner's per-person and per-row memory, kept small: a manifest of ten million rows
//! names two million persons, and every byte of a map entry is paid for each of them.
//!
//! A person is interned once, on its first row, into an index of [`Persons`]; each later row
//! of the person costs one look-up of its key. An image is remembered (for duplicate rows) by
//! that index and the low 64 bits of its key, in 16 bytes.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};

use crate::ledger::KeyHasher;

/// A 128-bit key kept at 4-byte alignment: an entry of it and a `u32` takes 20 bytes rather
/// than the 32 a `u128`'s alignment pads it to. Hashed by its low 64 bits, as [`KeyHasher`]
/// hashes a `u128`, so a map of these iterates in the same order as a `KeyMap` would.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Key([u32; 4]);

impl Key {
    pub(crate) fn of(key: u128) -> Key {
        Key([
            key as u32,
            (key >> 32) as u32,
            (key >> 64) as u32,
            (key >> 96) as u32,
        ])
    }

    pub(crate) fn get(self) -> u128 {
        let [a, b, c, d] = self.0.map(u128::from);
        a | b << 32 | c << 64 | d << 96
    }
}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u128(self.get());
    }
}

/// An image as the duplicate check remembers it: its person's index and the low 64 bits of
/// its key (the key already hashes the person's ids, so two images of one person are told
/// apart by 64 bits of hash: a clash is as likely as one in 2^64 per pair of that person's
/// images).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Seen {
    person: u32,
    image: [u32; 2],
}

impl Seen {
    pub(super) fn of(person: u32, key: u128) -> Seen {
        Seen {
            person,
            image: [key as u32, (key >> 32) as u32],
        }
    }
}

impl Hash for Seen {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let [lo, hi] = self.image.map(u64::from);
        state.write_u64(lo | hi << 32);
    }
}

type Map<K, V> = HashMap<K, V, BuildHasherDefault<KeyHasher>>;

/// Image → the manifest line that first named it (saturated at `u32::MAX`: a manifest of four
/// billion lines is out of reach), in parts by person: each part grows on its own, so a
/// growing map never holds its old and its new table of every image at once (ten million
/// rows: 140 MB less at the peak).
pub(super) struct SeenLines {
    parts: Vec<Map<Seen, u32>>,
}

/// How many parts [`SeenLines`] has.
const PARTS: usize = 64;

impl Default for SeenLines {
    fn default() -> SeenLines {
        SeenLines {
            parts: (0..PARTS).map(|_| Map::default()).collect(),
        }
    }
}

impl SeenLines {
    pub(super) fn entry(&mut self, seen: Seen) -> std::collections::hash_map::Entry<'_, Seen, u32> {
        self.parts[seen.person as usize % PARTS].entry(seen)
    }
}

/// A line number as [`SeenLines`] keeps it.
pub(super) fn line32(line: u64) -> u32 {
    u32::try_from(line).unwrap_or(u32::MAX)
}

/// What the planner keeps per person: 28 bytes.
#[derive(Clone, Copy)]
pub(super) struct PersonSlot {
    /// Images counted against the limit.
    pub used: u32,
    /// Registered images of the person the manifest still names.
    pub kept: u32,
    /// Registered images of the person in the ledger.
    pub registered: u32,
    /// New images planned (for a sync's limit, applied once the manifest is read).
    pub new: u32,
    /// Index of its library in `plan.libraries`.
    pub library: u32,
    /// Index of its job in `plan.jobs`, [`NO_JOB`] or [`COUNTED`].
    pub job: u32,
    pub over_limit: bool,
    /// Counted among the persons to look up (`check`, which keeps no jobs).
    pub looked_up: bool,
}

/// [`PersonSlot::job`]: nothing to send for the person yet.
pub(super) const NO_JOB: u32 = u32::MAX;
/// [`PersonSlot::job`]: something to send, counted but not kept (`check`).
pub(super) const COUNTED: u32 = u32::MAX - 1;

impl PersonSlot {
    pub(super) fn new(used: u32, registered: u32, library: u32) -> PersonSlot {
        PersonSlot {
            used,
            kept: 0,
            registered,
            new: 0,
            library,
            job: NO_JOB,
            over_limit: false,
            looked_up: false,
        }
    }

    /// The index of the person's job in `plan.jobs`, when one is kept.
    pub(super) fn job_index(&self) -> Option<usize> {
        (self.job < COUNTED).then_some(self.job as usize)
    }
}

/// Every person the manifest names: key → index, and the slots by index (in first-seen order).
#[derive(Default)]
pub(super) struct Persons {
    pub index: Map<Key, u32>,
    pub slots: Vec<PersonSlot>,
}

impl Persons {
    pub(super) fn get(&self, person: u128) -> Option<u32> {
        self.index.get(&Key::of(person)).copied()
    }

    /// Adds a person not seen before; its index.
    pub(super) fn add(&mut self, person: u128, slot: PersonSlot) -> u32 {
        let index = u32::try_from(self.slots.len()).expect("fewer than 4 billion persons");
        self.slots.push(slot);
        self.index.insert(Key::of(person), index);
        index
    }

    pub(super) fn len(&self) -> usize {
        self.slots.len()
    }

    /// (person key, index) in the map's order.
    pub(super) fn keys(&self) -> impl Iterator<Item = (u128, u32)> + '_ {
        self.index.iter().map(|(key, &index)| (key.get(), index))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_round_trips_and_hashes_as_its_u128_does() {
        let key = 0x0123_4567_89ab_cdef_fedc_ba98_7654_3210_u128;
        assert_eq!(Key::of(key).get(), key);
        let hash = |f: &dyn Fn(&mut KeyHasher)| {
            let mut h = KeyHasher::default();
            f(&mut h);
            h.finish()
        };
        assert_eq!(hash(&|h| Key::of(key).hash(h)), hash(&|h| key.hash(h)));
        assert_eq!(std::mem::size_of::<(Key, u32)>(), 20);
        assert_eq!(std::mem::size_of::<(Seen, u32)>(), 16);
        assert_eq!(std::mem::size_of::<PersonSlot>(), 28);
    }

    #[test]
    fn images_of_two_persons_with_the_same_low_bits_are_two_images() {
        assert_ne!(Seen::of(1, 7), Seen::of(2, 7));
        assert_ne!(Seen::of(1, 7), Seen::of(1, 7 | 1 << 40));
        assert_eq!(Seen::of(1, 7), Seen::of(1, 7 | 1 << 100));
    }
}
