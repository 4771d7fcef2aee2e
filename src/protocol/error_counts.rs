//! The error codes a response carries, counted by the handler that built it, so that metrics
//! (`kafka_network_requestmetrics_errors`) never has to parse responses.

/// The non-zero error codes of one response and how many times each occurs (top-level and per
/// topic, partition, group or member).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ErrorCounts {
    /// (error code, occurrences), in the order first seen. A response carries few distinct codes,
    /// so a vector searched from the front beats a map; an errorless response allocates nothing.
    counts: Vec<(i16, u64)>,
}

impl ErrorCounts {
    /// Counts one occurrence of `code`; 0 (no error) is not counted.
    pub fn add(&mut self, code: i16) {
        if code == 0 {
            return;
        }
        match self.counts.iter_mut().find(|(seen, _)| *seen == code) {
            Some((_, count)) => *count += 1,
            None => self.counts.push((code, 1)),
        }
    }

    /// Counts every code of `codes`.
    pub fn add_all(&mut self, codes: impl IntoIterator<Item = i16>) {
        codes.into_iter().for_each(|code| self.add(code));
    }

    /// Each counted code with its number of occurrences.
    pub fn iter(&self) -> impl Iterator<Item = (i16, u64)> + '_ {
        self.counts.iter().copied()
    }
}

/// A response type whose error codes are counted. Each handler family implements it, beside its
/// handlers, for the responses it builds.
pub trait CountErrors {
    fn count_errors(&self, counts: &mut ErrorCounts);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Zeros are not errors; repeated codes add up under one entry, in first-seen order.
    #[test]
    fn counts_non_zero_codes_once_per_occurrence() {
        let mut counts = ErrorCounts::default();
        counts.add_all([0, 3, 0, 6, 3, 3]);
        assert_eq!(counts.iter().collect::<Vec<_>>(), vec![(3, 3), (6, 1)]);
        assert_eq!(ErrorCounts::default().iter().count(), 0);
    }
}
