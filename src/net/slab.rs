//! Connection storage with tokens that are never reused.
//!
//! A token is `serial << 24 | slot`: the slot indexes a vector, the serial
//! is a counter that only increases, so an event for a connection that is
//! gone can never reach the connection that took its slot.

use mio::Token;

const SLOT_BITS: u32 = 24;
const SLOT_MASK: usize = (1 << SLOT_BITS) - 1;

struct Entry<T> {
    serial: usize,
    value: Option<T>,
}

/// A slab keyed by never-reused tokens.
pub struct Slab<T> {
    entries: Vec<Entry<T>>,
    free: Vec<usize>,
    next_serial: usize,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Slab::new()
    }
}

impl<T> Slab<T> {
    pub fn new() -> Self {
        Slab {
            entries: Vec::new(),
            free: Vec::new(),
            next_serial: 1,
        }
    }

    pub fn insert(&mut self, value: T) -> Token {
        let serial = self.next_serial;
        self.next_serial += 1;
        let slot = match self.free.pop() {
            Some(slot) => {
                self.entries[slot] = Entry {
                    serial,
                    value: Some(value),
                };
                slot
            }
            None => {
                self.entries.push(Entry {
                    serial,
                    value: Some(value),
                });
                self.entries.len() - 1
            }
        };
        assert!(slot <= SLOT_MASK, "more than 2^24 connections");
        Token((serial << SLOT_BITS) | slot)
    }

    pub fn get(&self, token: Token) -> Option<&T> {
        let e = self.entries.get(token.0 & SLOT_MASK)?;
        if e.serial != token.0 >> SLOT_BITS {
            return None;
        }
        e.value.as_ref()
    }

    pub fn get_mut(&mut self, token: Token) -> Option<&mut T> {
        let e = self.entries.get_mut(token.0 & SLOT_MASK)?;
        if e.serial != token.0 >> SLOT_BITS {
            return None;
        }
        e.value.as_mut()
    }

    /// The tokens of every stored value.
    pub fn tokens(&self) -> Vec<Token> {
        self.entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.value.is_some())
            .map(|(slot, e)| Token((e.serial << SLOT_BITS) | slot))
            .collect()
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.entries.len() == self.free.len()
    }

    pub fn remove(&mut self, token: Token) -> Option<T> {
        let slot = token.0 & SLOT_MASK;
        let e = self.entries.get_mut(slot)?;
        if e.serial != token.0 >> SLOT_BITS {
            return None;
        }
        let v = e.value.take();
        if v.is_some() {
            self.free.push(slot);
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_never_reused() {
        let mut s = Slab::new();
        let a = s.insert(1);
        assert_eq!(s.remove(a), Some(1));
        let b = s.insert(2);
        assert_ne!(a, b);
        assert_eq!(a.0 & SLOT_MASK, b.0 & SLOT_MASK, "the slot is reused");
        assert!(s.get_mut(a).is_none(), "the old token no longer resolves");
        assert_eq!(s.get_mut(b), Some(&mut 2));
        assert_eq!(s.remove(a), None);
        assert_eq!(s.tokens(), vec![b]);
        assert!(!s.is_empty());
        s.remove(b);
        assert!(s.is_empty() && s.tokens().is_empty());
    }
}
