//! [`Slots`]: a table of reusable slots, for the time-outs that many futures wait on at once
//! (the workers' alarms, the API calls' deadlines). A slot freed goes back to a free list and is
//! taken again before the table grows; the table keeps its size after a burst.

/// Slots of `T`, each held by one owner through its index until it is removed. A free slot holds
/// `T::default()`.
#[derive(Debug, Default)]
pub(crate) struct Slots<T> {
    slots: Vec<T>,
    /// The indexes no owner holds.
    free: Vec<usize>,
}

impl<T: Default> Slots<T> {
    /// Puts `value` in a free slot, or a new one: its index.
    pub(crate) fn insert(&mut self, value: T) -> usize {
        match self.free.pop() {
            Some(index) => {
                self.slots[index] = value;
                index
            }
            None => {
                self.slots.push(value);
                self.slots.len() - 1
            }
        }
    }

    /// Frees slot `index` (its value reset to the default).
    pub(crate) fn remove(&mut self, index: usize) {
        self.slots[index] = T::default();
        self.free.push(index);
    }

    /// How many slots are held.
    pub(crate) fn held(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// Every slot, the free ones (at their default) included.
    pub(crate) fn iter_mut(&mut self) -> std::slice::IterMut<'_, T> {
        self.slots.iter_mut()
    }
}

impl<T> std::ops::Index<usize> for Slots<T> {
    type Output = T;

    fn index(&self, index: usize) -> &T {
        &self.slots[index]
    }
}

impl<T> std::ops::IndexMut<usize> for Slots<T> {
    fn index_mut(&mut self, index: usize) -> &mut T {
        &mut self.slots[index]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_freed_slot_is_reset_and_taken_again_before_the_table_grows() {
        let mut slots = Slots::<u32>::default();
        let (a, b) = (slots.insert(1), slots.insert(2));
        assert_eq!((a, b, slots.held()), (0, 1, 2));
        slots.remove(a);
        assert_eq!((slots[a], slots.held()), (0, 1));
        assert_eq!(slots.insert(3), a, "the free slot first");
        assert_eq!(slots.insert(4), 2, "then a new one");
        assert_eq!(slots.iter_mut().map(|v| *v).collect::<Vec<_>>(), [3, 2, 4]);
    }
}
