//! Hashing and hex, in one place: the SHA-256 fingerprints the store keeps
//! (request bodies, token and session hashes, PDFs) and the hex text keys,
//! ids and codes are written in. Lower-case hex unless a format says
//! otherwise (a certificate's verification code is upper case).

use ring::digest::{SHA256, digest};

/// Lower-case hex SHA-256 of `bytes`: 64 characters.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex_lower(digest(&SHA256, bytes).as_ref())
}

/// `bytes` as lower-case hex, two characters a byte.
pub fn hex_lower(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

/// `bytes` as upper-case hex, two characters a byte.
pub fn hex_upper(bytes: &[u8]) -> String {
    hex::encode_upper(bytes)
}

/// Hex text (either case) as bytes; `None` for an odd length or a
/// character that is not a hex digit.
pub fn unhex(text: &str) -> Option<Vec<u8>> {
    hex::decode(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_the_empty_input_is_the_published_value() {
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn hex_round_trips_in_either_case_and_refuses_what_is_not_hex() {
        let bytes = [0x00, 0x9f, 0xa0, 0xff];
        assert_eq!(hex_lower(&bytes), "009fa0ff");
        assert_eq!(hex_upper(&bytes), "009FA0FF");
        assert_eq!(unhex("009fa0ff").unwrap(), bytes);
        assert_eq!(unhex("009FA0FF").unwrap(), bytes);
        assert_eq!(unhex("abc"), None);
        assert_eq!(unhex("zz"), None);
    }
}
