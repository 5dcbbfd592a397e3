//! [`stable_hash`]: the crate's one fixed hash function. Envelopes derive numeric ids
//! from it and partitioning hashes keys with it, so it sits below both.

/// 64-bit FNV-1a of `bytes`: a fixed, documented function, stable everywhere.
///
/// ```
/// assert_eq!(a3s_lane::stable_hash(b""), 0xcbf2_9ce4_8422_2325);
/// assert_eq!(a3s_lane::stable_hash(b"a"), 0xaf63_dc4c_8601_ec8c);
/// ```
pub fn stable_hash(bytes: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.iter().fold(OFFSET, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(PRIME)
    })
}
