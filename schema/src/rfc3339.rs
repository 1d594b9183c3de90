//! `DateTime<Utc>` as the `DateTime` scalar writes it (chrono's `to_rfc3339`:
//! `+00:00`, and a fraction of 3, 6 or 9 digits only when there is one),
//! without chrono's general formatter, which costs several times more. Slot
//! lists write two of these per slot.

use chrono::{DateTime, Datelike, Timelike, Utc};

/// The text of `t`, byte for byte what `t.to_rfc3339()` writes.
pub fn format(t: &DateTime<Utc>) -> String {
    let year = t.year();
    let nanos = t.nanosecond();
    // Years of four digits and no leap second: everything else is chrono's.
    if !(0..=9999).contains(&year) || nanos >= 1_000_000_000 {
        return t.to_rfc3339();
    }
    let mut out = String::with_capacity(35);
    digits(&mut out, year.unsigned_abs(), 4);
    out.push('-');
    digits(&mut out, t.month(), 2);
    out.push('-');
    digits(&mut out, t.day(), 2);
    out.push('T');
    digits(&mut out, t.hour(), 2);
    out.push(':');
    digits(&mut out, t.minute(), 2);
    out.push(':');
    digits(&mut out, t.second(), 2);
    if nanos != 0 {
        out.push('.');
        if nanos.is_multiple_of(1_000_000) {
            digits(&mut out, nanos / 1_000_000, 3);
        } else if nanos.is_multiple_of(1_000) {
            digits(&mut out, nanos / 1_000, 6);
        } else {
            digits(&mut out, nanos, 9);
        }
    }
    out.push_str("+00:00");
    out
}

/// Appends the last `count` decimal digits of `value`, zero-padded.
fn digits(out: &mut String, value: u32, count: u32) {
    let mut divisor = 10u32.pow(count - 1);
    while divisor > 0 {
        out.push(char::from(b'0' + ((value / divisor) % 10) as u8));
        divisor /= 10;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_what_chrono_writes() {
        for text in [
            "2026-11-30T10:00:00Z",
            "0001-01-01T00:00:00Z",
            "2026-03-08T07:30:00.5Z",
            "2026-03-08T07:30:00.000250Z",
            "2026-03-08T07:30:00.000000001Z",
            "9999-12-31T23:59:59.999999999Z",
        ] {
            let t = DateTime::parse_from_rfc3339(text).expect("rfc3339").to_utc();
            assert_eq!(format(&t), t.to_rfc3339(), "{text}");
        }
    }

    proptest::proptest! {
        #[test]
        fn any_instant_is_written_as_chrono_writes_it(
            seconds in -70_000_000_000i64..260_000_000_000,
            nanos in proptest::prop_oneof![
                proptest::strategy::Just(0u32),
                (0u32..1000).prop_map(|ms| ms * 1_000_000),
                (0u32..1_000_000).prop_map(|us| us * 1_000),
                0u32..1_000_000_000,
            ],
        ) {
            let t = DateTime::from_timestamp(seconds, nanos).expect("in chrono's range");
            proptest::prop_assert_eq!(format(&t), t.to_rfc3339());
        }
    }

    use proptest::strategy::Strategy as _;
}
