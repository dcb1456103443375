//! The session index: flow tuple → slab slot, written for the packet path.
//!
//! A general hash map stores every key beside its value. Here the keys already live in the
//! sessions (the forward tuple, and the reply tuple derived from it), so the index keeps only a
//! 16-bit tag of each key's hash and the 32-bit value, ten to a 64-byte bucket. That is about 16
//! bytes per NAT/FULLNAT session (two keys) instead of about 90, and a lookup reads one cache
//! line of index, which a burst can prefetch for all its packets before it processes the first
//! (`Worker::process_burst`). The key itself is compared in the session, which the packet needs
//! anyway.
//!
//! Buckets are probed linearly from a key's home bucket. Each bucket counts the keys that went
//! past it because it was full (`over`); a lookup stops at the first bucket with no such key.
//! Removal walks the same way and takes its count back, so churn leaves no tombstones behind.

use super::FlowKey;
use std::hash::BuildHasher;

/// Slots per bucket: 10 × (2-byte tag + 4-byte value) + a 4-byte count = 64 bytes.
const SLOTS: usize = 10;

/// Tag of an empty slot (a key's tag is never 0).
const EMPTY: u16 = 0;

/// One cache line of the index.
#[derive(Clone, Copy, Default)]
#[repr(C, align(64))]
struct Bucket {
    /// The 16-bit tags of slots 0-7, four to a word (slot 0 in the low lanes), so that they are
    /// matched a word at a time.
    tags: [u64; 2],
    /// The tags of slots 8 and 9.
    tags_tail: u32,
    vals: [u32; SLOTS],
    /// Keys stored beyond this bucket whose probe started at or before it.
    over: u32,
}

/// Tag/value slots of buckets, and how many values are stored.
pub(super) struct Index {
    buckets: Vec<Bucket>,
    mask: usize,
    len: usize,
    seeds: [u64; 3],
}

/// 64 × 64 → 128-bit multiply, halves folded: the mixing step of ahash's fallback hasher.
#[inline(always)]
fn fold(a: u64, b: u64) -> u64 {
    let r = u128::from(a) * u128::from(b);
    (r as u64) ^ ((r >> 64) as u64)
}

#[inline(always)]
fn tag_of(h: u64) -> u16 {
    ((h >> 48) as u16).max(1)
}

/// Every 16-bit lane of a word set to 1.
const LANES: u64 = 0x0001_0001_0001_0001;
/// The low 15 bits of every lane.
const LOW15: u64 = 0x7fff_7fff_7fff_7fff;

/// The top bit of every 16-bit lane of `x` that is zero, and only those (exact: no borrow
/// crosses lanes).
#[inline(always)]
fn zero_lanes(x: u64) -> u64 {
    !(((x & LOW15) + LOW15) | x | LOW15)
}

/// The lane top bits (15, 31, 47, 63) of `z` as bits 0-3: one multiply moves them to bits
/// 48-51, where no other partial product lands.
#[inline(always)]
fn four_bits(z: u64) -> u32 {
    ((z >> 15).wrapping_mul(1 << 48 | 1 << 33 | 1 << 18 | 1 << 3) >> 48) as u32 & 0xf
}

impl Bucket {
    /// The tags as three words of four lanes (the last two lanes of the third are 0).
    #[inline(always)]
    fn tag_words(&self) -> [u64; 3] {
        [self.tags[0], self.tags[1], u64::from(self.tags_tail)]
    }

    #[cfg(test)]
    fn tag(&self, s: usize) -> u16 {
        let w = self.tag_words()[s / 4];
        (w >> (16 * (s % 4))) as u16
    }

    fn set_tag(&mut self, s: usize, t: u16) {
        let shift = 16 * (s % 4);
        if s < 8 {
            let w = &mut self.tags[s / 4];
            *w = (*w & !(0xffff << shift)) | u64::from(t) << shift;
        } else {
            self.tags_tail = (self.tags_tail & !(0xffff << shift)) | u32::from(t) << shift;
        }
    }

    /// Bit `s` set for every slot `s` whose tag is `t`: a word of four tags at a time, without
    /// branches (a scan slot by slot mispredicts where it stops).
    #[inline(always)]
    fn slots_with(&self, t: u16) -> u32 {
        let tt = u64::from(t).wrapping_mul(LANES);
        let [a, b, c] = self.tag_words().map(|w| four_bits(zero_lanes(w ^ tt)));
        (a | b << 4 | c << 8) & ((1 << SLOTS) - 1)
    }
}

impl Index {
    /// An index with room for `keys` values at most 80 % full (at least one bucket).
    pub(super) fn with_room(keys: usize) -> Index {
        let buckets = (keys.saturating_mul(10) / (8 * SLOTS)).max(1).next_power_of_two();
        let rs = std::collections::hash_map::RandomState::new();
        Index {
            buckets: vec![Bucket::default(); buckets],
            mask: buckets - 1,
            len: 0,
            seeds: [rs.hash_one(1u8), rs.hash_one(2u8), rs.hash_one(3u8) | 1],
        }
    }

    /// An index with room for `keys` values that hashes as `self` does: hashes computed before a
    /// rebuild (a burst's pre-pass) stay valid in it.
    pub(super) fn with_room_like(&self, keys: usize) -> Index {
        Index { seeds: self.seeds, ..Index::with_room(keys) }
    }

    /// The hash of a tuple under this index's random seeds (low bits: home bucket; high 16:
    /// tag).
    #[inline]
    pub(super) fn hash(&self, k: &FlowKey) -> u64 {
        let a = u64::from(u32::from(k.src)) << 32 | u64::from(u32::from(k.dst));
        let b = u64::from(k.sport) << 32 | u64::from(k.dport) << 16 | u64::from(k.proto);
        fold(fold(a ^ self.seeds[0], b ^ self.seeds[1]), self.seeds[2])
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Slots in all (the load limit is 7/8 of them).
    pub(super) fn slots(&self) -> usize {
        self.buckets.len() * SLOTS
    }

    /// Whether one more value would take the index over 7/8 full.
    pub(super) fn full(&self) -> bool {
        (self.len + 1) * 8 > self.slots() * 7
    }

    /// Address of the home bucket of hash `h` (to prefetch).
    #[inline]
    pub(super) fn bucket_addr(&self, h: u64) -> *const u8 {
        let b: &Bucket = &self.buckets[h as usize & self.mask];
        b as *const Bucket as *const u8
    }

    /// The first value in `h`'s home bucket whose tag matches: most likely the key's (to
    /// prefetch its session; not a lookup).
    #[inline]
    pub(super) fn first_candidate(&self, h: u64) -> Option<u32> {
        let b = &self.buckets[h as usize & self.mask];
        let m = b.slots_with(tag_of(h));
        (m != 0).then(|| b.vals[m.trailing_zeros() as usize])
    }

    /// The value stored under hash `h` for which `is_key` holds.
    #[inline]
    pub(super) fn find(&self, h: u64, mut is_key: impl FnMut(u32) -> bool) -> Option<u32> {
        let t = tag_of(h);
        let mut i = h as usize & self.mask;
        for _ in 0..self.buckets.len() {
            let b = &self.buckets[i];
            let mut m = b.slots_with(t);
            while m != 0 {
                let v = b.vals[m.trailing_zeros() as usize];
                if is_key(v) {
                    return Some(v);
                }
                m &= m - 1;
            }
            if b.over == 0 {
                return None;
            }
            i = (i + 1) & self.mask;
        }
        None
    }

    /// Store `val` under hash `h`. The caller makes sure the key is not stored yet and that the
    /// index is not [`full`](Self::full).
    pub(super) fn insert(&mut self, h: u64, val: u32) {
        debug_assert!(self.len < self.slots());
        let t = tag_of(h);
        let mut i = h as usize & self.mask;
        for _ in 0..self.buckets.len() {
            let b = &mut self.buckets[i];
            let free = b.slots_with(EMPTY);
            if free != 0 {
                let s = free.trailing_zeros() as usize;
                b.set_tag(s, t);
                b.vals[s] = val;
                self.len += 1;
                return;
            }
            b.over += 1;
            i = (i + 1) & self.mask;
        }
        // Only reachable with every slot taken, which `full` prevents; undo the counts.
        debug_assert!(false, "session index overfull");
        let mut i = h as usize & self.mask;
        for _ in 0..self.buckets.len() {
            self.buckets[i].over -= 1;
            i = (i + 1) & self.mask;
        }
    }

    /// Take `val` (stored under hash `h`) out; `false` when it is not there.
    pub(super) fn remove(&mut self, h: u64, val: u32) -> bool {
        let t = tag_of(h);
        let home = h as usize & self.mask;
        let mut i = home;
        for steps in 0..self.buckets.len() {
            let b = &mut self.buckets[i];
            let mut m = b.slots_with(t);
            while m != 0 && b.vals[m.trailing_zeros() as usize] != val {
                m &= m - 1;
            }
            if m != 0 {
                let s = m.trailing_zeros() as usize;
                b.set_tag(s, EMPTY);
                b.vals[s] = 0;
                self.len -= 1;
                let mut j = home;
                for _ in 0..steps {
                    self.buckets[j].over -= 1;
                    j = (j + 1) & self.mask;
                }
                return true;
            }
            if b.over == 0 {
                return false;
            }
            i = (i + 1) & self.mask;
        }
        false
    }

    /// Every stored value (any order).
    #[cfg(test)]
    fn values(&self) -> impl Iterator<Item = u32> + '_ {
        self.buckets.iter().flat_map(|b| (0..SLOTS).filter(|&s| b.tag(s) != EMPTY).map(|s| b.vals[s]))
    }

    /// Bytes the index holds.
    pub(super) fn bytes(&self) -> usize {
        self.buckets.len() * std::mem::size_of::<Bucket>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::net::Ipv4Addr;

    fn key(i: u32) -> FlowKey {
        FlowKey {
            proto: 6,
            src: Ipv4Addr::from(0xC000_0200 | (i & 0xff)),
            dst: Ipv4Addr::new(203, 0, 113, 100),
            sport: 1024 + (i >> 8) as u16,
            dport: 80,
        }
    }

    /// The lane matcher finds exactly the slots holding a tag, whatever the neighbouring lanes
    /// hold (values around the lane borrow edges included).
    #[test]
    fn slots_with_is_exact() {
        let vals = [0u16, 1, 2, 0x7fff, 0x8000, 0x8001, 0xfffe, 0xffff, 0x0100, 0x00ff];
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..20_000 {
            let mut b = Bucket::default();
            let mut tags = [0u16; SLOTS];
            for (s, t) in tags.iter_mut().enumerate() {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                *t = vals[(rng % vals.len() as u64) as usize];
                b.set_tag(s, *t);
            }
            assert_eq!((0..SLOTS).map(|s| b.tag(s)).collect::<Vec<_>>(), tags.to_vec());
            for &t in &vals {
                let want = (0..SLOTS).filter(|&s| tags[s] == t).fold(0u32, |m, s| m | 1 << s);
                assert_eq!(b.slots_with(t), want, "tags {tags:04x?} tag {t:04x}");
            }
        }
    }

    #[test]
    fn bucket_is_one_cache_line() {
        assert_eq!(std::mem::size_of::<Bucket>(), 64);
        assert_eq!(std::mem::align_of::<Bucket>(), 64);
    }

    /// A model check against a HashMap with a tiny index, so buckets overflow, chains cross
    /// the end of the table and removals run through `over` counts; the hash is squeezed into
    /// few tag values so tags collide and the key check decides.
    #[test]
    fn model_check_with_overflow_and_tag_collisions() {
        let mut ix = Index::with_room(60);
        assert_eq!(ix.slots(), 80);
        // Force many collisions: only 3 bits of hash vary in the home bucket and 2 in the tag.
        let h = |k: &FlowKey, ix: &Index| {
            let x = ix.hash(k);
            (x & 0x7) | ((x >> 48 & 0x3) << 48)
        };
        let mut model: HashMap<u32, FlowKey> = HashMap::new();
        let mut keys_of: HashMap<u32, FlowKey> = HashMap::new();
        let mut rng = 0x1234_5678u64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        for step in 0..20_000u32 {
            let i = (next() % 100) as u32;
            let k = key(i);
            let hk = h(&k, &ix);
            let found = ix.find(hk, |v| keys_of.get(&v) == Some(&k));
            assert_eq!(found.is_some(), model.contains_key(&i), "step {step} key {i}");
            if let Some(v) = found {
                assert_eq!(v, i);
                if next() % 2 == 0 {
                    assert!(ix.remove(hk, v));
                    model.remove(&i);
                    keys_of.remove(&v);
                    assert!(!ix.remove(hk, v), "removed twice");
                }
            } else if !ix.full() {
                ix.insert(hk, i);
                model.insert(i, k);
                keys_of.insert(i, k);
            }
            assert_eq!(ix.len(), model.len());
        }
        let mut vals: Vec<u32> = ix.values().collect();
        vals.sort_unstable();
        let mut want: Vec<u32> = model.keys().copied().collect();
        want.sort_unstable();
        assert_eq!(vals, want);
        // Everything out again: every overflow count returns to 0.
        for (i, k) in model.clone() {
            assert!(ix.remove(h(&k, &ix), i));
        }
        assert_eq!(ix.len(), 0);
        assert!(ix.buckets.iter().all(|b| b.over == 0 && (0..SLOTS).all(|s| b.tag(s) == EMPTY)));
    }

    #[test]
    fn sized_for_load_and_fills_to_seven_eighths() {
        let ix = Index::with_room(1_000_000);
        assert!(ix.slots() * 8 >= 1_000_000 * 10);
        assert_eq!(ix.bytes(), ix.slots() / SLOTS * 64);
        let mut small = Index::with_room(8);
        let mut n = 0u32;
        while !small.full() {
            let hk = small.hash(&key(n));
            small.insert(hk, n);
            n += 1;
        }
        assert_eq!(n as usize, small.slots() * 7 / 8);
        for i in 0..n {
            let k = key(i);
            assert_eq!(small.find(small.hash(&k), |v| v == i), Some(i));
        }
    }

    #[test]
    fn hash_depends_on_every_field_and_the_seed() {
        let ix = Index::with_room(10);
        let k = key(7);
        let h = ix.hash(&k);
        for k2 in [
            FlowKey { proto: 17, ..k },
            FlowKey { src: Ipv4Addr::new(192, 0, 2, 8), ..k },
            FlowKey { dst: Ipv4Addr::new(203, 0, 113, 101), ..k },
            FlowKey { sport: k.sport + 1, ..k },
            FlowKey { dport: 81, ..k },
        ] {
            assert_ne!(ix.hash(&k2), h, "{k2:?}");
        }
        assert_ne!(Index::with_room(10).hash(&k), h, "seeds differ per index");
    }
}
