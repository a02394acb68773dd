//! Server-generated ids (FaceId, LibId, EntityId, SampleId): unique, 32 hex digits, and the
//! same sequence for the same seed so snapshots of seeded runs can be compared.

use super::faults::mix;

pub(crate) struct IdGen {
    base: u64,
    issued: u64,
}

impl IdGen {
    pub fn new(seed: u64) -> Self {
        IdGen {
            base: mix(seed ^ 0x6964_7300_0000_0003),
            issued: 0,
        }
    }

    /// A fresh id; `mix` is a bijection, so the low half alone never repeats.
    pub fn next_id(&mut self) -> String {
        self.issued += 1;
        let low = mix(self.base.wrapping_add(self.issued));
        format!("{:016x}{low:016x}", mix(low ^ self.base))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_are_unique_and_reproducible_from_the_seed() {
        let mut a = IdGen::new(5);
        let ids: Vec<String> = (0..10_000).map(|_| a.next_id()).collect();
        assert_eq!(ids.iter().collect::<HashSet<_>>().len(), ids.len());
        assert!(ids.iter().all(|id| id.len() == 32));
        let mut b = IdGen::new(5);
        assert_eq!(b.next_id(), ids[0]);
        assert_ne!(IdGen::new(6).next_id(), ids[0]);
    }
}
