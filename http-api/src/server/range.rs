//! The HTTP `Range` header, single byte ranges only (RFC 9110 §14).

/// Why a `Range` header cannot be served.
#[derive(Debug, PartialEq, Eq)]
pub enum RangeError {
    /// Not `bytes=A-B`, `bytes=A-` or `bytes=-N`, or several ranges.
    Malformed,
    /// Starts at or past the end of the resource.
    Unsatisfiable,
}

/// The inclusive byte range `(first, last)` of a resource of `len` bytes.
pub fn parse_range(header: &str, len: u64) -> Result<(u64, u64), RangeError> {
    let spec = header
        .trim()
        .strip_prefix("bytes=")
        .ok_or(RangeError::Malformed)?
        .trim();
    if spec.contains(',') {
        return Err(RangeError::Malformed);
    }
    let (a, b) = spec.split_once('-').ok_or(RangeError::Malformed)?;
    let num = |s: &str| -> Result<u64, RangeError> {
        if s.is_empty() || s.len() > 19 || !s.bytes().all(|c| c.is_ascii_digit()) {
            return Err(RangeError::Malformed);
        }
        s.parse().map_err(|_| RangeError::Malformed)
    };
    match (a.trim(), b.trim()) {
        ("", n) => {
            let n = num(n)?;
            if n == 0 || len == 0 {
                return Err(RangeError::Unsatisfiable);
            }
            Ok((len.saturating_sub(n), len - 1))
        }
        (a, "") => {
            let a = num(a)?;
            if a >= len {
                return Err(RangeError::Unsatisfiable);
            }
            Ok((a, len - 1))
        }
        (a, b) => {
            let (a, b) = (num(a)?, num(b)?);
            if b < a {
                return Err(RangeError::Malformed);
            }
            if a >= len {
                return Err(RangeError::Unsatisfiable);
            }
            Ok((a, b.min(len - 1)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn forms() {
        assert_eq!(parse_range("bytes=0-9", 100), Ok((0, 9)));
        assert_eq!(parse_range("bytes=90-", 100), Ok((90, 99)));
        assert_eq!(parse_range("bytes=-10", 100), Ok((90, 99)));
        assert_eq!(parse_range("bytes=-1000", 100), Ok((0, 99)));
        assert_eq!(parse_range("bytes=95-1000", 100), Ok((95, 99)));
        assert_eq!(
            parse_range("bytes=100-", 100),
            Err(RangeError::Unsatisfiable)
        );
        assert_eq!(parse_range("bytes=-0", 100), Err(RangeError::Unsatisfiable));
        for bad in [
            "bytes=5-1",
            "bytes=a-b",
            "items=0-1",
            "bytes=0-1,3-4",
            "bytes=",
            "bytes=-",
            "bytes=+1-2",
        ] {
            assert_eq!(parse_range(bad, 100), Err(RangeError::Malformed), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn any_header_gives_a_range_inside_the_resource(h in ".{0,40}", len in 0u64..1_000_000) {
            if let Ok((a, b)) = parse_range(&h, len) {
                prop_assert!(a <= b && b < len);
            }
        }
    }
}
