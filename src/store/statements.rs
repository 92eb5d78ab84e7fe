//! Building the store's multi-row statements: a few fixed sizes padded with NULL rows, and id
//! lists bound as one JSON value.

/// Statement sizes, in rows. A chunk of outcomes is padded with rows of NULLs up to the next
/// size, so only these few statements are ever prepared and they stay in the statement cache:
/// preparing a new statement for every batch length cost a tenth of a fast drain's CPU.
/// 512 rows of 8 values stay far below SQLite's 32,766-variable limit.
pub(super) const STATEMENT_ROWS: [usize; 4] = [1, 8, 64, 512];
/// The largest statement, in rows.
pub(super) const ROWS_PER_STATEMENT: usize = STATEMENT_ROWS[STATEMENT_ROWS.len() - 1];

/// The prepared-once SQL for a chunk of `rows` rows, and how many padding rows it needs.
/// `rows` is at most [`ROWS_PER_STATEMENT`].
pub(super) fn sized(statements: &'static [String], rows: usize) -> (&'static str, usize) {
    let index = STATEMENT_ROWS
        .iter()
        .position(|&size| size >= rows)
        .unwrap_or(STATEMENT_ROWS.len() - 1);
    (statements[index].as_str(), STATEMENT_ROWS[index] - rows)
}

/// Ids as a JSON array, for `json_each`: one bound value however many ids.
pub(super) fn id_list(ids: &[i64]) -> String {
    let mut text = String::with_capacity(ids.len() * 8 + 2);
    text.push('[');
    for (i, id) in ids.iter().enumerate() {
        if i > 0 {
            text.push(',');
        }
        text.push_str(&id.to_string());
    }
    text.push(']');
    text
}

/// `head (?,?,..),(?,?,..) tail` with `rows` groups of `columns` placeholders.
pub(super) fn values_sql(head: &str, rows: usize, columns: usize, tail: &str) -> String {
    let group = format!("({})", vec!["?"; columns].join(","));
    let mut sql = String::with_capacity(head.len() + tail.len() + rows * (group.len() + 1));
    sql.push_str(head);
    for i in 0..rows {
        if i > 0 {
            sql.push(',');
        }
        sql.push_str(&group);
    }
    sql.push_str(tail);
    sql
}
