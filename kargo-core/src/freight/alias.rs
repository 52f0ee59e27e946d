//! Friendly `<adjective>-<animal>` aliases for Freight.
//!
//! Kargo gives every piece of Freight a memorable alias besides its opaque
//! ID. This generator derives the alias deterministically from the Freight ID,
//! so tests, examples and replays produce the same aliases every time.

use sha1::{Digest, Sha1};

use super::FreightId;

/// How many `<adjective>-<animal>` combinations [`AliasGenerator::generate`]
/// tries before falling back to numbered aliases.
const MAX_TRIES: u64 = 1000;

/// Built-in adjectives: short, plain, friendly English words.
const ADJECTIVES: &[&str] = &[
    "able", "agile", "amber", "ample", "azure", "balmy", "bold", "brave", "breezy", "bright",
    "brisk", "bubbly", "calm", "candid", "cheery", "civil", "clever", "cosmic", "cozy", "crisp",
    "curious", "dapper", "daring", "dazzling", "deft", "eager", "earnest", "easy", "elated",
    "epic", "fancy", "fearless", "festive", "fluffy", "fond", "frank", "free", "fresh", "friendly",
    "frosty", "gentle", "giddy", "gifted", "glad", "golden", "graceful", "grand", "happy", "hardy",
    "hearty", "helpful", "honest", "humble", "jolly", "jovial", "keen", "kind", "lively", "loyal",
    "lucky", "lunar", "mellow", "merry", "mighty", "minty", "modest", "neat", "nimble", "noble",
    "plucky", "polite", "proud", "quick", "quiet", "rapid", "ready", "regal", "rosy", "rustic",
    "shiny", "silent", "silky", "smart", "snappy", "snug", "solar", "sparkly", "spry", "steady",
    "sturdy", "sunny", "swift", "tidy", "trusty", "upbeat", "vivid", "warm", "witty", "zany",
    "zesty",
];

/// Built-in animals: short, plain English names.
const ANIMALS: &[&str] = &[
    "aardvark", "alpaca", "ant", "antelope", "badger", "beaver", "bee", "bison", "bobcat",
    "buffalo", "camel", "caribou", "cat", "cheetah", "chipmunk", "cougar", "coyote", "crab",
    "crane", "crow", "deer", "dolphin", "donkey", "dove", "duck", "eagle", "elk", "emu", "falcon",
    "ferret", "finch", "flamingo", "fox", "frog", "gazelle", "gecko", "gerbil", "gibbon",
    "giraffe", "goat", "goose", "gopher", "gorilla", "hamster", "hare", "hawk", "hedgehog",
    "heron", "hippo", "horse", "ibex", "iguana", "impala", "jaguar", "kangaroo", "kiwi", "koala",
    "lemur", "leopard", "lion", "llama", "lobster", "lynx", "macaw", "magpie", "marmot", "meerkat",
    "mole", "moose", "narwhal", "newt", "ocelot", "octopus", "orca", "otter", "owl", "panda",
    "panther", "parrot", "pelican", "penguin", "pony", "puffin", "quail", "rabbit", "raccoon",
    "raven", "robin", "salmon", "seal", "sloth", "sparrow", "squid", "swan", "tiger", "toucan",
    "turtle", "walrus", "whale", "wombat",
];

/// Generates friendly `<adjective>-<animal>` aliases (e.g. `brave-otter`) for
/// Freight, deterministically from the Freight ID.
///
/// Uniqueness within a project is the caller's business: it passes a predicate
/// telling which aliases are already taken.
///
/// ```
/// use kargo_core::freight::{AliasGenerator, Freight, FreightOrigin, GenericArtifact};
///
/// let freight = Freight::new(
///     FreightOrigin::warehouse("wh"),
///     vec![],
///     vec![],
///     vec![],
///     vec![GenericArtifact { version: "v1".into(), ..Default::default() }],
/// );
/// let generator = AliasGenerator::default();
/// let alias = generator.generate(&freight.name, |_| false);
/// assert_eq!(alias, generator.generate(&freight.name, |_| false));
/// assert_eq!(alias.split('-').count(), 2);
/// ```
#[derive(Clone, Debug)]
pub struct AliasGenerator {
    adjectives: &'static [&'static str],
    animals: &'static [&'static str],
}

impl Default for AliasGenerator {
    fn default() -> Self {
        Self {
            adjectives: ADJECTIVES,
            animals: ANIMALS,
        }
    }
}

impl AliasGenerator {
    /// Returns an alias for the Freight with the given ID that `is_taken`
    /// reports as free.
    ///
    /// Candidates are `<adjective>-<animal>` pairs visited in an order derived
    /// from the ID (the same ID always yields the same sequence, and no pair is
    /// visited twice). After every pair or 1000 of them have been found taken,
    /// the first candidate is suffixed with `-2`, `-3`, ... until a free alias
    /// turns up. A predicate that reports every string as taken makes this
    /// loop for a very long time.
    pub fn generate(&self, id: &FreightId, is_taken: impl Fn(&str) -> bool) -> String {
        let digest = Sha1::digest(id.as_str().as_bytes());
        let seed = |range: std::ops::Range<usize>| {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(&digest[range]);
            u64::from_be_bytes(bytes)
        };
        let total = (self.adjectives.len() * self.animals.len()) as u64;
        if total == 0 {
            return format!("freight-{}", id.short());
        }
        let start = seed(0..8) % total;
        let step = coprime_step(seed(8..16), total);

        for k in 0..total.min(MAX_TRIES) {
            let index = (u128::from(start) + u128::from(k) * u128::from(step)) % u128::from(total);
            let candidate = self.combination(index as u64);
            if !is_taken(&candidate) {
                return candidate;
            }
        }

        let base = self.combination(start);
        for n in 2..u64::MAX {
            let candidate = format!("{base}-{n}");
            if !is_taken(&candidate) {
                return candidate;
            }
        }
        format!("{base}-{}", id.as_str())
    }

    /// The `index`-th `<adjective>-<animal>` combination.
    fn combination(&self, index: u64) -> String {
        let animals = self.animals.len() as u64;
        let adjective = self.adjectives[(index / animals) as usize];
        let animal = self.animals[(index % animals) as usize];
        format!("{adjective}-{animal}")
    }
}

/// A step in `1..total` coprime with `total`, derived from `seed`, so that
/// `start + k * step (mod total)` visits every combination exactly once.
fn coprime_step(seed: u64, total: u64) -> u64 {
    if total <= 1 {
        return 1;
    }
    let mut step = seed % total;
    loop {
        if step == 0 {
            step = 1;
        }
        if gcd(step, total) == 1 {
            return step;
        }
        step = (step + 1) % total;
    }
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::BTreeSet;

    use super::*;

    fn id(n: u32) -> FreightId {
        let hex: String = format!("{n:040x}");
        hex.parse().unwrap()
    }

    #[test]
    fn word_lists_are_plain_and_unique() {
        for list in [ADJECTIVES, ANIMALS] {
            assert!(
                (95..=105).contains(&list.len()),
                "list has {} words",
                list.len()
            );
            let unique: BTreeSet<_> = list.iter().collect();
            assert_eq!(unique.len(), list.len(), "duplicate word");
            for word in list {
                assert!(
                    word.len() <= 10 && word.bytes().all(|b| b.is_ascii_lowercase()),
                    "{word}"
                );
            }
        }
    }

    #[test]
    fn deterministic() {
        let generator = AliasGenerator::default();
        for n in 0..50 {
            let first = generator.generate(&id(n), |_| false);
            let second = generator.generate(&id(n), |_| false);
            assert_eq!(first, second);
            let (adjective, animal) = first.split_once('-').unwrap();
            assert!(
                ADJECTIVES.contains(&adjective) && ANIMALS.contains(&animal),
                "{first}"
            );
        }
        // Different IDs spread over different aliases.
        let distinct: BTreeSet<_> = (0..50)
            .map(|n| generator.generate(&id(n), |_| false))
            .collect();
        assert!(distinct.len() > 40);
    }

    #[test]
    fn never_returns_a_taken_alias() {
        let generator = AliasGenerator::default();
        let taken = RefCell::new(BTreeSet::new());
        for n in 0..300 {
            let alias = generator.generate(&id(n % 7), |a| taken.borrow().contains(a));
            assert!(
                taken.borrow_mut().insert(alias.clone()),
                "{alias} handed out twice"
            );
        }
    }

    #[test]
    fn skips_taken_candidates_deterministically() {
        let generator = AliasGenerator::default();
        let first = generator.generate(&id(1), |_| false);
        let second = generator.generate(&id(1), |a| a == first);
        assert_ne!(first, second);
        assert_eq!(second, generator.generate(&id(1), |a| a == first));
    }

    #[test]
    fn numbers_the_first_candidate_after_max_tries() {
        let generator = AliasGenerator::default();
        let first = generator.generate(&id(3), |_| false);
        // Everything without a number is taken, and so is "<first>-2".
        let alias = generator.generate(&id(3), |a| {
            !a.ends_with(char::is_numeric) || a == format!("{first}-2")
        });
        assert_eq!(alias, format!("{first}-3"));
    }

    #[test]
    fn exhausts_small_word_lists_before_numbering() {
        let generator = AliasGenerator {
            adjectives: &["red", "blue"],
            animals: &["cat", "dog", "eel"],
        };
        let seen = RefCell::new(BTreeSet::new());
        let alias = generator.generate(&id(9), |a| {
            seen.borrow_mut().insert(a.to_owned());
            !a.ends_with(char::is_numeric)
        });
        let plain = seen
            .borrow()
            .iter()
            .filter(|a| !a.ends_with(char::is_numeric))
            .count();
        assert_eq!(plain, 6, "every combination tried once");
        assert!(alias.ends_with("-2"), "{alias}");
    }

    #[test]
    fn coprime_steps() {
        for total in [1, 2, 6, 100, 9_900, 10_000] {
            for seed in [0, 1, 2, 5, 99, u64::MAX] {
                let step = coprime_step(seed, total);
                assert_eq!(gcd(step, total), 1, "total {total} seed {seed} step {step}");
            }
        }
    }
}
