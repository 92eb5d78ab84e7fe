//! Field rules Kapture enforces, checked at ingest so a bad row never reaches the API.

use std::borrow::Cow;

/// Checks `callback_time` is `yyyy-MM-dd HH:mm:ss` (24-hour), rewriting the ISO-8601 form
/// `yyyy-MM-ddTHH:mm:ss` to it. Returns the value to send or a reason naming the format.
pub fn callback_time(value: &str) -> Result<Cow<'_, str>, String> {
    let bytes = value.as_bytes();
    let shape_ok = bytes.len() == 19
        && bytes.iter().enumerate().all(|(i, &b)| match i {
            4 | 7 => b == b'-',
            10 => b == b' ' || b == b'T',
            13 | 16 => b == b':',
            _ => b.is_ascii_digit(),
        });
    let reason = || {
        format!(
            "callback_time {value:?} is not yyyy-MM-dd HH:mm:ss (24-hour), e.g. 2026-03-01 14:30:00"
        )
    };
    if !shape_ok {
        return Err(reason());
    }
    let num = |range: std::ops::Range<usize>| -> u32 { value[range].parse().unwrap_or(u32::MAX) };
    let (year, month, day) = (num(0..4), num(5..7), num(8..10));
    let (hour, minute, second) = (num(11..13), num(14..16), num(17..19));
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return Err(format!("{}: month {month} does not exist", reason())),
    };
    if day == 0 || day > days_in_month {
        return Err(format!(
            "{}: day {day} does not exist in month {month}",
            reason()
        ));
    }
    if hour > 23 || minute > 59 || second > 59 {
        return Err(format!("{}: time out of range", reason()));
    }
    if bytes[10] == b'T' {
        let mut fixed = value.to_owned();
        fixed.replace_range(10..11, " ");
        Ok(Cow::Owned(fixed))
    } else {
        Ok(Cow::Borrowed(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_kapture_form_unchanged() {
        assert_eq!(
            callback_time("2026-03-01 14:30:00").unwrap(),
            "2026-03-01 14:30:00"
        );
        assert!(matches!(
            callback_time("2024-02-29 23:59:59").unwrap(),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn rewrites_the_iso_form() {
        assert_eq!(
            callback_time("2026-03-01T14:30:00").unwrap(),
            "2026-03-01 14:30:00"
        );
    }

    #[test]
    fn rejects_other_shapes_and_impossible_dates() {
        for bad in [
            "2026-03-01",
            "2026-03-01 2:30:00",
            "2026-03-01 14:30",
            "01/03/2026 14:30:00",
            "2026-03-01T14:30:00Z",
            "2026-03-01 14:30:00.000",
            "2026-13-01 14:30:00",
            "2026-02-29 10:00:00",
            "2026-04-31 10:00:00",
            "2026-03-01 24:00:00",
            "2026-03-01 12:60:00",
            "2026-03-01 02:30:00 PM",
            "２０２６-03-01 14:30:00",
        ] {
            let err = callback_time(bad).expect_err(bad);
            assert!(err.contains("yyyy-MM-dd HH:mm:ss"), "{bad}: {err}");
        }
    }
}
