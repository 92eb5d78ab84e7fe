//! Reading callback times in the formats and time zone a mapping names, into Kapture's form.
//!
//! Kapture reads `callback_time` as `yyyy-MM-dd HH:mm:ss` wall-clock time in one zone (the
//! account's). A mapping's `[formats]` table says how the source writes times
//! (`callback_time = ["%d/%m/%Y %H:%M", ...]`, strftime-style, the first that parses wins)
//! and which zone Kapture reads them in (`timezone = "Asia/Kolkata"`). Wall-clock values are
//! kept as they are; values that name an instant (ISO 8601 with `Z` or an offset) are
//! converted into the zone, exact to the second (fractions of a second are dropped).

use std::borrow::Cow;

use jiff::civil::DateTime;
use jiff::fmt::strtime;
use jiff::tz::{AmbiguousOffset, TimeZone};
use jiff::{Timestamp, ZonedDateTime};

use super::validate;

/// Kapture's form of a callback time.
const KAPTURE_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

/// How callback times are read: the source's formats and Kapture's zone.
#[derive(Debug, Clone, Default)]
pub struct TimeRule {
    formats: Vec<String>,
    zone: Option<(String, TimeZone)>,
}

impl TimeRule {
    /// A rule from a mapping's `[formats]`: checks the zone name against the bundled time zone
    /// database and that each format has a conversion in it.
    pub fn new(formats: Vec<String>, timezone: Option<&str>) -> Result<Self, String> {
        for format in &formats {
            if !format.contains('%') {
                return Err(format!(
                    "[formats] callback_time has {format:?}, which has no %-conversion \
                     (for example \"%d/%m/%Y %H:%M\")"
                ));
            }
        }
        let zone = match timezone {
            Some(name) => {
                let zone = TimeZone::get(name).map_err(|_| {
                    format!(
                        "[formats] timezone {name:?} is not an IANA time zone name \
                         (for example \"Asia/Kolkata\" or \"Europe/Berlin\")"
                    )
                })?;
                Some((name.to_owned(), zone))
            }
            None => None,
        };
        Ok(Self { formats, zone })
    }

    /// Whether the rule reads anything beyond Kapture's own form.
    pub fn is_default(&self) -> bool {
        self.formats.is_empty() && self.zone.is_none()
    }

    /// The value to send for a source callback time, or why there is none.
    pub fn convert<'a>(&self, value: &'a str) -> Result<Cow<'a, str>, String> {
        let canonical = validate::callback_time(value);
        if canonical.is_ok() || self.is_default() && !looks_like_instant(value) {
            return canonical;
        }
        if let Ok(instant) = value.parse::<Timestamp>() {
            return self.in_zone(value, instant);
        }
        for format in &self.formats {
            let Ok(parsed) = strtime::parse(format, value) else {
                continue;
            };
            if parsed.offset().is_some() {
                if let Ok(instant) = parsed.to_timestamp() {
                    return self.in_zone(value, instant);
                }
                continue;
            }
            if let Ok(datetime) = parsed.to_datetime() {
                return self.wall_clock(value, datetime);
            }
        }
        if self.formats.is_empty() {
            return canonical;
        }
        Err(format!(
            "callback_time {value:?} matches none of the [formats] callback_time formats ({}) \
             nor yyyy-MM-dd HH:mm:ss",
            self.formats
                .iter()
                .map(|f| format!("{f:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        ))
    }

    /// An instant as wall-clock time in Kapture's zone.
    fn in_zone(&self, value: &str, instant: Timestamp) -> Result<Cow<'static, str>, String> {
        let Some((_, zone)) = &self.zone else {
            return Err(format!(
                "callback_time {value:?} names a UTC offset, but the mapping names no time \
                 zone to convert it into: add timezone = \"Area/City\" (the zone Kapture reads \
                 callback times in) under [formats]"
            ));
        };
        let local: ZonedDateTime = instant.to_zoned_datetime(zone.clone());
        Ok(Cow::Owned(
            local.datetime().strftime(KAPTURE_FORMAT).to_string(),
        ))
    }

    /// A wall-clock time, checked to exist in Kapture's zone when one is named.
    fn wall_clock(&self, value: &str, datetime: DateTime) -> Result<Cow<'static, str>, String> {
        if let Some((name, zone)) = &self.zone
            && matches!(
                zone.to_ambiguous_timestamp(datetime).offset(),
                AmbiguousOffset::Gap { .. }
            )
        {
            return Err(format!(
                "callback_time {value:?} does not exist in {name}: the clocks skip it \
                 (a daylight saving change)"
            ));
        }
        Ok(Cow::Owned(datetime.strftime(KAPTURE_FORMAT).to_string()))
    }
}

/// Whether a value looks like an ISO 8601 instant (a date, `T`, and `Z` or an offset).
fn looks_like_instant(value: &str) -> bool {
    value.len() > 19
        && value.as_bytes().get(10) == Some(&b'T')
        && value.parse::<Timestamp>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(formats: &[&str], zone: Option<&str>) -> TimeRule {
        TimeRule::new(formats.iter().map(|f| (*f).to_owned()).collect(), zone).unwrap()
    }

    #[test]
    fn formats_are_tried_in_order_and_the_canonical_form_always_passes() {
        let rule = rule(&["%d/%m/%Y %H:%M", "%m/%d/%Y %I:%M %p"], None);
        assert_eq!(
            rule.convert("31/12/2026 18:00").unwrap(),
            "2026-12-31 18:00:00"
        );
        assert_eq!(
            rule.convert("12/31/2026 6:00 PM").unwrap(),
            "2026-12-31 18:00:00"
        );
        assert_eq!(
            rule.convert("01/02/2026 09:30").unwrap(),
            "2026-02-01 09:30:00"
        );
        assert_eq!(
            rule.convert("2026-12-31 18:00:00").unwrap(),
            "2026-12-31 18:00:00"
        );
        assert_eq!(
            rule.convert("2026-12-31T18:00:00").unwrap(),
            "2026-12-31 18:00:00"
        );
        let err = rule.convert("31.12.2026").unwrap_err();
        assert!(err.contains("\"%d/%m/%Y %H:%M\""), "{err}");
        assert!(rule.convert("31/02/2026 10:00").is_err(), "no such day");
    }

    #[test]
    fn instants_need_a_zone_and_convert_exactly_into_it() {
        let none = rule(&[], None);
        for value in [
            "2026-12-31T18:00:00Z",
            "2026-12-31T18:00:00.000Z",
            "2026-12-31T18:00:00+05:30",
        ] {
            let err = none.convert(value).unwrap_err();
            assert!(err.contains("timezone = \"Area/City\""), "{value}: {err}");
        }
        let kolkata = rule(&[], Some("Asia/Kolkata"));
        assert_eq!(
            kolkata.convert("2026-12-31T18:00:00Z").unwrap(),
            "2026-12-31 23:30:00"
        );
        assert_eq!(
            kolkata.convert("2026-12-31T18:00:00.999Z").unwrap(),
            "2026-12-31 23:30:00"
        );
        assert_eq!(
            kolkata.convert("2026-12-31T18:00:00+05:30").unwrap(),
            "2026-12-31 18:00:00"
        );
        assert_eq!(
            kolkata.convert("2026-12-31T20:00:00-01:00").unwrap(),
            "2027-01-01 02:30:00"
        );
        // Wall-clock values stay as they are.
        assert_eq!(
            kolkata.convert("2026-12-31 18:00:00").unwrap(),
            "2026-12-31 18:00:00"
        );
    }

    #[test]
    fn conversions_across_daylight_saving_changes_are_exact() {
        let berlin = rule(&["%d/%m/%Y %H:%M"], Some("Europe/Berlin"));
        // Spring forward 2026-03-29 01:00 UTC: 02:00 CET becomes 03:00 CEST.
        assert_eq!(
            berlin.convert("2026-03-29T00:59:59Z").unwrap(),
            "2026-03-29 01:59:59"
        );
        assert_eq!(
            berlin.convert("2026-03-29T01:00:00Z").unwrap(),
            "2026-03-29 03:00:00"
        );
        // Fall back 2026-10-25 01:00 UTC: 03:00 CEST becomes 02:00 CET; 02:30 happens twice.
        assert_eq!(
            berlin.convert("2026-10-25T00:30:00Z").unwrap(),
            "2026-10-25 02:30:00"
        );
        assert_eq!(
            berlin.convert("2026-10-25T01:30:00Z").unwrap(),
            "2026-10-25 02:30:00"
        );
        assert_eq!(
            berlin.convert("2026-10-25T01:00:00Z").unwrap(),
            "2026-10-25 02:00:00"
        );
        // A wall-clock time inside the spring gap does not exist.
        let err = berlin.convert("29/03/2026 02:30").unwrap_err();
        assert!(err.contains("does not exist in Europe/Berlin"), "{err}");
        assert_eq!(
            berlin.convert("29/03/2026 03:00").unwrap(),
            "2026-03-29 03:00:00"
        );
        // New York's offsets: -05:00 in winter, -04:00 after 2026-03-08.
        let new_york = rule(&[], Some("America/New_York"));
        assert_eq!(
            new_york.convert("2026-03-08T06:59:59Z").unwrap(),
            "2026-03-08 01:59:59"
        );
        assert_eq!(
            new_york.convert("2026-03-08T07:00:00Z").unwrap(),
            "2026-03-08 03:00:00"
        );
    }

    #[test]
    fn formats_with_an_offset_are_instants() {
        let rule = rule(&["%d/%m/%Y %H:%M %z"], Some("Asia/Kolkata"));
        assert_eq!(
            rule.convert("31/12/2026 18:00 +0000").unwrap(),
            "2026-12-31 23:30:00"
        );
    }

    #[test]
    fn bad_settings_are_refused() {
        assert!(
            TimeRule::new(vec![], Some("Mars/Olympus"))
                .unwrap_err()
                .contains("IANA")
        );
        assert!(
            TimeRule::new(vec!["dd/mm/yyyy".into()], None)
                .unwrap_err()
                .contains("%")
        );
    }

    #[test]
    fn without_formats_the_old_messages_stay() {
        let err = TimeRule::default().convert("02/01/2026").unwrap_err();
        assert!(err.contains("yyyy-MM-dd HH:mm:ss"), "{err}");
    }
}
