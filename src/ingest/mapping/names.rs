//! Matching source column and key names to Kapture fields, ignoring case, spaces and `_`/`-`.

use crate::kapture::KAPTURE_FIELDS;

/// Common export column names (normalized) and the Kapture field they mean.
const ALIASES: [(&str, &str); 6] = [
    ("id", "ticket_id"),
    ("ticket", "ticket_id"),
    ("ticketnumber", "ticket_id"),
    ("status", "sub_status"),
    ("comments", "comment"),
    ("callback", "callback_time"),
];

/// Lower-cases and drops spaces, underscores and hyphens: `Sub Status` == `sub_status`.
pub(crate) fn normalize(name: &str) -> String {
    name.chars()
        .filter(|c| !matches!(c, ' ' | '_' | '-'))
        .flat_map(char::to_lowercase)
        .collect()
}

/// The Kapture field a source column or key is named like, by its own name only.
pub(crate) fn field_named(name: &str) -> Option<&'static str> {
    let n = normalize(name);
    KAPTURE_FIELDS.into_iter().find(|f| normalize(f) == n)
}

/// The Kapture field a CSV column means, by its name or a common export alias.
pub(crate) fn field_or_alias(name: &str) -> Option<&'static str> {
    field_named(name).or_else(|| {
        let n = normalize(name);
        ALIASES.iter().find(|(a, _)| *a == n).map(|(_, f)| *f)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_ignoring_case_spaces_and_separators() {
        assert_eq!(field_named("Sub Status"), Some("sub_status"));
        assert_eq!(field_named("TICKET-ID"), Some("ticket_id"));
        assert_eq!(field_named("Id"), None);
        assert_eq!(field_or_alias("Id"), Some("ticket_id"));
        assert_eq!(field_or_alias("Ticket Number"), Some("ticket_id"));
        assert_eq!(field_or_alias("Agent"), None);
    }
}
