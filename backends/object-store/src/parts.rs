//! Multipart part sizes, so that any object fits S3's limits: at most 10,000 parts per upload,
//! each part but the last at least 5 MiB, and none above 5 GiB.
//!
//! - Size known up front (`--size`): every part has the same size, the configured `part_size`
//!   or, for objects too large for 10,000 of those, the smallest whole number of MiB that fits
//!   (a 5 TiB object goes up in 525 MiB parts). Equal parts also suit servers that insist on
//!   them (Cloudflare R2).
//! - Size unknown (stdin): parts start at `part_size` and double every [`GROWTH_EVERY`] parts
//!   (capped at 5 GiB), so 10,000 parts hold more than 5 TiB even from 5 MiB parts. Memory in
//!   flight grows with them: `part size × upload_concurrency`.

/// Most parts an S3 multipart upload may have.
pub(crate) const MAX_PARTS: u64 = 10_000;
/// Smallest part S3 accepts (all but the last part).
pub(crate) const MIN_PART: u64 = 5 << 20;
/// Largest part S3 accepts.
pub(crate) const MAX_PART: u64 = 5 << 30;
/// Parts of one size before the size doubles, when the object's size is unknown.
pub(crate) const GROWTH_EVERY: u64 = 800;

/// The size of each part of one upload (kept in a resumable upload's token, so the parts go on
/// in the sizes they started with whatever the configuration says by then).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum PartSizes {
    /// Every part this size (the last may be shorter).
    Fixed(u64),
    /// Starts at this size and doubles every [`GROWTH_EVERY`] parts.
    Growing(u64),
}

impl PartSizes {
    /// The schedule for an object of `known` size (when known), from the configured part size.
    pub(crate) fn new(configured: u64, known: Option<u64>) -> Self {
        let configured = configured.clamp(MIN_PART, MAX_PART);
        match known {
            Some(size) => {
                let needed = size.div_ceil(MAX_PARTS).next_multiple_of(1 << 20);
                Self::Fixed(configured.max(needed).min(MAX_PART))
            }
            None => Self::Growing(configured),
        }
    }

    /// The size of part `index` (0-based).
    pub(crate) fn of(self, index: usize) -> usize {
        let bytes = match self {
            Self::Fixed(size) => size,
            Self::Growing(base) => {
                let doublings = (index as u64 / GROWTH_EVERY).min(16);
                base.saturating_mul(1 << doublings).min(MAX_PART)
            }
        };
        usize::try_from(bytes).unwrap_or(usize::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The parts an object of `size` bytes is cut into, checked against S3's limits.
    fn parts(sizes: PartSizes, size: u64) -> u64 {
        let (mut left, mut index) = (size, 0usize);
        while left > 0 {
            let part = sizes.of(index) as u64;
            assert!(part <= MAX_PART, "part {index} of {size} bytes is {part} bytes, over 5 GiB ({sizes:?})");
            let take = part.min(left);
            left -= take;
            if left > 0 {
                assert!(take >= MIN_PART, "part {index} of {size} bytes is {take} bytes, under 5 MiB ({sizes:?})");
            }
            index += 1;
        }
        index as u64
    }

    const SIZES: [u64; 9] =
        [1, 5 << 20, (5 << 20) + 1, 50 << 30, 80_000 << 20, 1 << 40, 3 << 40, (5 << 40) - 1, 5 << 40];

    #[test]
    fn known_sizes_up_to_5_tib_fit_in_10000_equal_parts() {
        for configured in [MIN_PART, 8 << 20, 64 << 20, MAX_PART] {
            for size in SIZES {
                let sizes = PartSizes::new(configured, Some(size));
                assert!(matches!(sizes, PartSizes::Fixed(_)));
                let n = parts(sizes, size);
                assert!(n <= MAX_PARTS, "{size} bytes from {configured}-byte parts needs {n} parts");
            }
        }
        // Small objects keep the configured size; huge ones get the smallest MiB size that fits.
        assert_eq!(PartSizes::new(8 << 20, Some(1 << 30)), PartSizes::Fixed(8 << 20));
        assert_eq!(PartSizes::new(8 << 20, Some(5 << 40)), PartSizes::Fixed(525 << 20));
    }

    #[test]
    fn unknown_sizes_up_to_5_tib_fit_in_10000_growing_parts() {
        for configured in [MIN_PART, 8 << 20, 64 << 20, MAX_PART] {
            let sizes = PartSizes::new(configured, None);
            for size in SIZES {
                let n = parts(sizes, size);
                assert!(n <= MAX_PARTS, "{size} bytes from {configured}-byte growing parts needs {n} parts");
            }
        }
        let sizes = PartSizes::new(MIN_PART, None);
        assert_eq!(sizes.of(0), 5 << 20);
        assert_eq!(sizes.of(GROWTH_EVERY as usize - 1), 5 << 20);
        assert_eq!(sizes.of(GROWTH_EVERY as usize), 10 << 20);
        assert_eq!(sizes.of(9_999), 5 << 30, "capped at 5 GiB");
    }

    #[test]
    fn a_fixed_small_part_would_not_fit() {
        // The check above can fail: 5 MiB parts for 5 TiB is 1,048,576 parts.
        assert!(parts(PartSizes::Fixed(MIN_PART), 1 << 40) > MAX_PARTS);
    }
}
