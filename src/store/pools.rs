//! The X-number pools in memory, for allocation (`allocation.rs`): per app and area code, the
//! numbers ordered by how many bindings they hold, of whatever mode (`axb_pairs`).
//!
//! Choosing an X is the hot part of an area-code bind. Reading every candidate's pair count from
//! sled made it linear in the pool size; this index makes it a B-tree walk that usually stops at
//! the first candidate. It lives inside the writer mutex, so it changes only together with the
//! store under the same lock, and is rebuilt from the store at open.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;

use crate::domain::number::shared_area_prefix;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Filed {
    app_key: String,
    /// Normalized area code.
    area: String,
    pairs: u32,
}

/// A position in one area's ordering: `(pairs, X)`.
pub(crate) type Cursor = (u32, String);

#[derive(Debug, Default)]
pub(crate) struct Pools {
    /// app key → normalized area code → `(pairs, X)` in allocation order.
    areas: HashMap<String, BTreeMap<String, BTreeSet<Cursor>>>,
    numbers: HashMap<String, Filed>,
}

impl Pools {
    /// Files X under its app and area (moving it if it was filed elsewhere), keeping its count.
    pub(crate) fn file(&mut self, app_key: &str, area: &str, x_number: &str) {
        let pairs = self.unfile(x_number);
        self.insert(x_number, Filed { app_key: app_key.to_owned(), area: area.to_owned(), pairs });
    }

    /// Removes X; returns the pair count it had.
    pub(crate) fn unfile(&mut self, x_number: &str) -> u32 {
        let Some(filed) = self.numbers.remove(x_number) else { return 0 };
        if let Some(areas) = self.areas.get_mut(&filed.app_key) {
            if let Some(set) = areas.get_mut(&filed.area) {
                set.remove(&(filed.pairs, x_number.to_owned()));
                if set.is_empty() {
                    areas.remove(&filed.area);
                }
            }
        }
        filed.pairs
    }

    fn insert(&mut self, x_number: &str, filed: Filed) {
        let areas = self.areas.entry(filed.app_key.clone()).or_default();
        areas.entry(filed.area.clone()).or_default().insert((filed.pairs, x_number.to_owned()));
        self.numbers.insert(x_number.to_owned(), filed);
    }

    pub(crate) fn pairs(&self, x_number: &str) -> Option<u32> {
        self.numbers.get(x_number).map(|filed| filed.pairs)
    }

    /// Records X's new pair count. A number not in any pool (removed meanwhile) is ignored.
    pub(crate) fn set_pairs(&mut self, x_number: &str, pairs: u32) {
        if let Some(mut filed) = self.numbers.get(x_number).cloned() {
            self.unfile(x_number);
            filed.pairs = pairs;
            self.insert(x_number, filed);
        }
    }

    /// The app's areas in the order allocation tries them: strict, only `wanted`; lenient, `wanted`
    /// first, then by how many leading digits they share with it, then by area code.
    pub(crate) fn areas_to_try(&self, app_key: &str, wanted: &str, lenient: bool) -> Vec<String> {
        let Some(areas) = self.areas.get(app_key) else { return Vec::new() };
        if !lenient {
            return areas.contains_key(wanted).then(|| wanted.to_owned()).into_iter().collect();
        }
        let mut ranked: Vec<(usize, &String)> = areas
            .keys()
            .map(|area| (if area == wanted { usize::MAX } else { shared_area_prefix(area, wanted) }, area))
            .collect();
        ranked.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1)));
        ranked.into_iter().map(|(_, area)| area.clone()).collect()
    }

    /// The next number of an area after `cursor` (the emptiest first).
    pub(crate) fn next_in_area(&self, app_key: &str, area: &str, cursor: Option<&Cursor>) -> Option<Cursor> {
        let set = self.areas.get(app_key)?.get(area)?;
        let lower = cursor.map_or(Bound::Unbounded, Bound::Excluded);
        set.range((lower, Bound::Unbounded)).next().cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocation_order_follows_pair_counts() {
        let mut pools = Pools::default();
        for x in ["+1", "+2", "+3"] {
            pools.file("app", "755", x);
        }
        pools.set_pairs("+1", 5);
        pools.set_pairs("+2", 1);
        let first = pools.next_in_area("app", "755", None).unwrap();
        assert_eq!(first, (0, "+3".to_owned()));
        let second = pools.next_in_area("app", "755", Some(&first)).unwrap();
        assert_eq!(second, (1, "+2".to_owned()));
        pools.file("app", "756", "+2");
        assert_eq!(pools.pairs("+2"), Some(1), "moving areas keeps the count");
        assert_eq!(pools.areas_to_try("app", "756", true), ["756", "755"]);
        assert_eq!(pools.areas_to_try("app", "10", false), Vec::<String>::new());
        assert_eq!(pools.unfile("+2"), 1);
        assert_eq!(pools.areas_to_try("app", "756", true), ["755"]);
    }
}
