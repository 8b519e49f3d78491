//! `print_largenum`: the counter columns of `--stats` and `--rate`.

/// One counter column as ipvsadm prints it, leading padding included.
///
/// With `exact`, the decimal right-aligned to 9 columns, or with one leading space when it has
/// more than 8 digits. Otherwise below 10^8 right-aligned to 9; below 10^9 thousands + `K`;
/// below 10^11 millions + `M`; below 10^14 billions + `G`; else trillions + `T` (each
/// truncated, right-aligned to 8 before the unit).
pub fn largenum(n: u64, exact: bool) -> String {
    if exact {
        let digits = n.to_string();
        let width = if digits.len() <= 8 {
            9
        } else {
            digits.len() + 1
        };
        return format!("{digits:>width$}");
    }
    match n {
        0..=99_999_999 => format!("{n:>9}"),
        100_000_000..=999_999_999 => format!("{:>8}K", n / 1_000),
        1_000_000_000..=99_999_999_999 => format!("{:>8}M", n / 1_000_000),
        100_000_000_000..=99_999_999_999_999 => format!("{:>8}G", n / 1_000_000_000),
        _ => format!("{:>8}T", n / 1_000_000_000_000),
    }
}

#[cfg(test)]
mod tests {
    use super::largenum;

    #[test]
    fn unit_boundaries() {
        assert_eq!(largenum(0, false), "        0");
        assert_eq!(largenum(99_999_999, false), " 99999999");
        assert_eq!(largenum(100_000_000, false), "  100000K");
        assert_eq!(largenum(999_999_999, false), "  999999K");
        assert_eq!(largenum(1_000_000_000, false), "    1000M");
        assert_eq!(largenum(99_999_999_999, false), "   99999M");
        assert_eq!(largenum(100_000_000_000, false), "     100G");
        assert_eq!(largenum(1_234_567_890_123, false), "    1234G");
        assert_eq!(largenum(99_999_999_999_999, false), "   99999G");
        assert_eq!(largenum(100_000_000_000_000, false), "     100T");
        assert_eq!(largenum(u64::MAX, false), "18446744T");
    }

    #[test]
    fn exact_keeps_one_leading_space() {
        assert_eq!(largenum(5, true), "        5");
        assert_eq!(largenum(12_345_678, true), " 12345678");
        assert_eq!(largenum(123_456_789, true), " 123456789");
        assert_eq!(largenum(1_234_567_890_123, true), " 1234567890123");
        assert_eq!(largenum(u64::MAX, true), " 18446744073709551615");
    }
}
