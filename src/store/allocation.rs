//! What every mode's bind shares: whether an X of the app may take a binding, choosing a free X
//! for an area-code bind, X's binding count, and new subscription ids.
//!
//! Invariants kept here:
//! - `axb_pairs[X]` counts the bindings on X whatever its app's mode (an X belongs to one app, so
//!   to one mode); the in-memory pools order numbers by it, and follow each commit that changes it;
//! - allocation tries the app's areas in [`Pools::areas_to_try`] order and, within an area, the X
//!   holding the fewest bindings as the current change leaves them (then the lowest number); a
//!   mode only says whether a given X has room ([`RoomOnX`]).
//!
//! Everything here runs under the writer lock: choosing an X and taking it must not interleave.

use std::collections::HashSet;

use crate::domain::number::normalize_area_code;
use crate::domain::{App, Rejection};

use super::keys;
use super::pools::{Cursor, Pools};
use super::{Bindings, Error, OpError, Shared, Tree, WriteSet};

/// How many due expiries a bind sweeps before it looks for room, so expired bindings free
/// capacity at once while one request never does unbounded work.
pub(super) const SWEEP_BEFORE_BIND: usize = 64;

/// Subscription ids are opaque (String(1-64)): 32 random hex digits.
pub(super) fn new_subscription_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// What a mode tells the allocation loop about one bind.
pub(super) trait RoomOnX {
    /// What the mode learns from an X with room (AXE: the extension it takes).
    type Room;

    /// The pools, as the change under way sees them.
    fn pools(&self) -> &Pools;

    /// X's binding count as the change under way leaves it, given its committed count. Only a
    /// mode that stages several binds in one commit (AXB's batches) differs from `committed`.
    fn staged(&mut self, _x_number: &str, committed: u32) -> Result<u32, Error> {
        Ok(committed)
    }

    /// Whether the change under way counts X differently from the pools.
    fn touched(&self, _x_number: &str) -> bool {
        false
    }

    /// Whether X can take this bind: its room, or the rejection that sends allocation on to the
    /// next X. A mode may purge an expired binding of X that stands in the way.
    fn room_on(&mut self, x_number: &str) -> Result<Self::Room, OpError>;
}

/// Picks the X for an area-code bind among the app's numbers, each holding fewer than `capacity`
/// bindings. Strict: only numbers of that area code. Lenient: the same area first, then areas
/// sharing the most leading digits (a stand-in for "same province"), then any. Within an area,
/// the emptiest X as the change leaves it, then the lowest number. `None`: no X has room; each
/// mode names that refusal in its own words.
pub(super) fn allocate<R: RoomOnX>(
    room: &mut R,
    app_key: &str,
    area_code: &str,
    lenient: bool,
    capacity: u32,
) -> Result<Option<(String, R::Room)>, OpError> {
    let wanted = normalize_area_code(area_code);
    for area in room.pools().areas_to_try(app_key, wanted, lenient) {
        let mut tried = HashSet::new();
        while let Some(x_number) = emptiest_in_area(room, app_key, &area, capacity, &tried)? {
            match room.room_on(&x_number) {
                Ok(found) => return Ok(Some((x_number, found))),
                Err(OpError::Rejected(_)) => {
                    tried.insert(x_number);
                }
                Err(err) => return Err(err),
            }
        }
    }
    Ok(None)
}

/// The X of `area` with the fewest bindings as the change leaves them (then the lowest number),
/// leaving out `tried`. The pools order numbers by committed counts, and a change only adds to
/// those; so the best is among the numbers up to the first one the change has not touched.
fn emptiest_in_area<R: RoomOnX>(
    room: &mut R,
    app_key: &str,
    area: &str,
    capacity: u32,
    tried: &HashSet<String>,
) -> Result<Option<String>, Error> {
    let mut best: Option<(u32, String)> = None;
    let mut cursor: Option<Cursor> = None;
    while let Some(next) = room.pools().next_in_area(app_key, area, cursor.as_ref()) {
        // The first number full as committed means all the rest are.
        if next.0 >= capacity {
            break;
        }
        let touched = room.touched(&next.1);
        if !tried.contains(&next.1) {
            let staged = room.staged(&next.1, next.0)?;
            if staged < capacity && best.as_ref().is_none_or(|(fewest, _)| staged < *fewest) {
                best = Some((staged, next.1.clone()));
            }
            if !touched {
                break;
            }
        }
        cursor = Some(next);
    }
    Ok(best.map(|(_, x_number)| x_number))
}

impl Shared {
    /// How many bindings X holds, of whatever mode its app has (expired ones not yet purged
    /// included): the `axb_pairs` counter, which every mode keeps.
    pub(crate) fn pairs_on(&self, x_number: &str) -> Result<u32, Error> {
        Ok(keys::read_count(self.get(Tree::AxbPairs, x_number.as_bytes())?.as_deref()))
    }

    /// X's binding count as the pools hold it (read from the store for a number they do not
    /// file). Allocation orders numbers by it, and the admin API refuses to remove a number it
    /// counts.
    pub(crate) fn bindings_on(&self, pools: &Pools, x_number: &str) -> Result<u32, Error> {
        match pools.pairs(x_number) {
            Some(count) => Ok(count),
            None => self.pairs_on(x_number),
        }
    }

    /// Stages X's new binding count; [`Pools::set_pairs`] follows after the commit.
    pub(crate) fn stage_bindings_on(writes: &mut WriteSet, x_number: &str, count: u32) {
        if count == 0 {
            writes.remove(Tree::AxbPairs, x_number.as_bytes());
        } else {
            writes.put(Tree::AxbPairs, x_number.as_bytes(), keys::count(count));
        }
    }
}

impl Bindings {
    /// X is in the app's pool and its status lets it take new bindings.
    pub(super) fn check_x_of_app(&self, app: &App, x_number: &str) -> Result<(), OpError> {
        let Some(number) = self.shared.number(x_number)?.filter(|number| number.app_key == app.app_key) else {
            return Err(Rejection::NumberNotInPool { x_number: x_number.to_owned() }.into());
        };
        if !number.status.allows_new_bindings() {
            return Err(Rejection::NumberStatus { x_number: x_number.to_owned(), status: number.status }.into());
        }
        Ok(())
    }
}

/// Where an area-code bind looked, for the refusal that found no X: `"in area code 0755"`, or
/// with `areaMatchMode` = 1, `"for area code 0755 or elsewhere"`.
pub(super) fn where_looked(area_code: &str, lenient: bool) -> String {
    if lenient {
        format!("for area code {area_code} or elsewhere")
    } else {
        format!("in area code {area_code}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A mode whose X has room unless it is listed as refusing.
    struct Fake {
        pools: Pools,
        refusing: Vec<&'static str>,
        asked: Vec<String>,
    }

    impl RoomOnX for Fake {
        type Room = ();

        fn pools(&self) -> &Pools {
            &self.pools
        }

        fn room_on(&mut self, x_number: &str) -> Result<(), OpError> {
            self.asked.push(x_number.to_owned());
            if self.refusing.contains(&x_number) {
                return Err(Rejection::NumberNotInPool { x_number: x_number.to_owned() }.into());
            }
            Ok(())
        }
    }

    fn fake(refusing: Vec<&'static str>) -> Fake {
        let mut pools = Pools::default();
        for (x, area, count) in [("+1", "755", 2), ("+2", "755", 1), ("+3", "755", 3), ("+4", "756", 0)] {
            pools.file("app", area, x);
            pools.set_pairs(x, count);
        }
        Fake { pools, refusing, asked: Vec::new() }
    }

    fn chosen(room: &mut Fake, area_code: &str, lenient: bool, capacity: u32) -> Option<String> {
        allocate(room, "app", area_code, lenient, capacity).unwrap().map(|(x, ())| x)
    }

    #[test]
    fn the_emptiest_x_with_room_wins_and_a_refusing_one_is_passed_over() {
        assert_eq!(chosen(&mut fake(vec![]), "0755", false, 5).as_deref(), Some("+2"));
        let mut room = fake(vec!["+2"]);
        assert_eq!(chosen(&mut room, "0755", false, 5).as_deref(), Some("+1"));
        assert_eq!(room.asked, ["+2", "+1"]);
    }

    #[test]
    fn full_numbers_are_not_asked_and_lenient_looks_elsewhere() {
        let mut room = fake(vec![]);
        assert_eq!(chosen(&mut room, "0755", false, 1), None);
        assert!(room.asked.is_empty(), "every 0755 number holds its capacity");
        assert_eq!(chosen(&mut room, "0755", true, 1).as_deref(), Some("+4"));
        assert_eq!(where_looked("0755", true), "for area code 0755 or elsewhere");
    }
}
