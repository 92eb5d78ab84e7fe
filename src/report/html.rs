//! The report as one self-contained HTML page: inline CSS and SVG, no script, no link out.

use std::fmt::Write as _;

use super::charts::{self, ChartError, colour};
use super::hints::Group;
use super::model::{Bucket, ClassCounts, Report, Timeline};

const STYLE: &str = "
:root{--fg:#1d1d1f;--muted:#5f6368;--line:#dadce0;--bg:#fff}
*{box-sizing:border-box}
body{font:15px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:var(--fg);
background:var(--bg);margin:0 auto;max-width:1040px;padding:24px}
h1{font-size:1.6em;margin:0 0 4px}h2{font-size:1.25em;margin:32px 0 8px;
border-bottom:2px solid var(--line);padding-bottom:4px}h3{font-size:1.05em;margin:20px 0 6px}
.sub,.note{color:var(--muted)}.note{font-size:.9em}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(130px,1fr));gap:10px;margin:14px 0}
.card{border:1px solid var(--line);border-radius:8px;padding:8px 12px}
.card b{display:block;font-size:1.4em}.card span{color:var(--muted);font-size:.85em}
figure{margin:10px 0 18px}figure svg{width:100%;height:auto;display:block}
figcaption{font-weight:600;margin-bottom:2px}
.legend{display:flex;flex-wrap:wrap;gap:4px 14px;font-size:.88em;color:var(--muted);margin:4px 0}
.sw{display:inline-block;width:11px;height:11px;border-radius:2px;margin-right:5px;
vertical-align:-1px}
.scroll{overflow-x:auto}
table{border-collapse:collapse;width:100%;font-size:.92em;margin:6px 0 12px}
th,td{text-align:left;padding:5px 8px;border-bottom:1px solid var(--line);vertical-align:top}
th{font-weight:600;background:#f6f8fa}td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
code{font:.88em ui-monospace,SFMono-Regular,Menlo,monospace;background:#f1f3f4;padding:1px 4px;
border-radius:3px;overflow-wrap:anywhere}
.msg{overflow-wrap:anywhere}
ul.ex{margin:0;padding-left:18px}
tr.cmd td{border-top:0;padding-top:0;font-size:.9em}tr.grp td{border-bottom:0}
nav{font-size:.92em;margin:2px 0 0}nav a{color:#1a5fb4}
@media (max-width:640px){body{padding:12px;font-size:14px}h1{font-size:1.3em}
figure .scroll svg{min-width:520px}th,td{padding:4px 5px}.hide-narrow{display:none}}
@media print{body{max-width:none;padding:0;font-size:11pt}h2{break-after:avoid}
figure,table,.card{break-inside:avoid}.scroll{overflow:visible}figure .scroll svg{min-width:0}
a{color:inherit;text-decoration:none}nav{display:none}}
";

/// Intervals listed under "429 pauses and halts" at most.
const MARKS_SHOWN: usize = 12;

/// Renders the page.
pub fn render(report: &Report, title: &str) -> Result<String, ChartError> {
    let mut page = String::with_capacity(64 * 1024);
    let _ = write!(
        page,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{t}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<h1>{t}</h1>\n\
         <p class=\"sub\">{} · generated {} by kapsync {}</p>\n\
         <nav><a href=\"#stands\">Where it stands</a> · <a href=\"#over-time\">Over time</a> · \
         <a href=\"#problems\">What went wrong</a> · <a href=\"#settings\">Settings</a></nav>\n",
        scope_text(report),
        time_text(report.generated_at),
        esc(report.kapsync_version),
        t = esc(title),
    );
    standing(&mut page, report)?;
    over_time(&mut page, report)?;
    problems(&mut page, report);
    settings(&mut page, report);
    page.push_str("</body>\n</html>\n");
    Ok(page)
}

fn scope_text(report: &Report) -> String {
    match (report.scope, report.runs.as_slice()) {
        ("run", [run]) => format!("Run {}", esc(&run.run)),
        (_, runs) => format!("All {} runs", runs.len()),
    }
}

fn standing(page: &mut String, r: &Report) -> Result<(), ChartError> {
    let t = &r.total;
    page.push_str("<h2 id=\"stands\">Where it stands</h2>\n<div class=\"cards\">\n");
    let done = t.counts.succeeded + t.failed_resolved;
    let share = if t.total > 0 {
        format!("{:.1}%", done as f64 * 100.0 / t.total as f64)
    } else {
        "–".into()
    };
    let cards = [
        (share, "of rows done".to_owned()),
        (num(t.counts.succeeded), "succeeded".into()),
        (num(t.failed_open), "failed, open".into()),
        (num(t.failed_resolved), "failed, resolved later".into()),
        (num(t.counts.invalid), "invalid".into()),
        (num(t.counts.skipped), "skipped as unchanged".into()),
        (num(t.counts.pending + t.counts.in_flight), "pending".into()),
    ];
    for (value, label) in cards {
        let _ = writeln!(
            page,
            "<div class=\"card\"><b>{value}</b><span>{label}</span></div>"
        );
    }
    page.push_str("</div>\n");
    match &r.eta {
        Some(eta) => {
            let _ = writeln!(
                page,
                "<p><b>ETA:</b> the {} open rows need about <b>{}</b> of draining at the recent \
                 rate ({:.2} rows/s over the last hour of draining).</p>",
                num(eta.open_rows),
                duration_text(eta.seconds),
                eta.rows_per_second
            );
        }
        None if t.counts.pending + t.counts.in_flight == 0 => {
            page.push_str("<p><b>Nothing is left to send.</b></p>\n");
        }
        None => page.push_str("<p><b>ETA:</b> unknown: no rows have finished yet.</p>\n"),
    }
    let _ = write!(
        page,
        "<figure><figcaption>Rows by state{}</figcaption><div class=\"fit\">{}</div>\
         <div class=\"legend\">",
        if r.runs.len() > charts::STANDING_BARS {
            format!(" (the latest {} runs and the total)", charts::STANDING_BARS)
        } else {
            String::new()
        },
        charts::standing(&r.runs, t)?
    );
    for (name, _, c) in charts::segments(t) {
        legend(page, name, c);
    }
    page.push_str("</div></figure>\n<div class=\"scroll\"><table>\n<tr><th>run</th>");
    for h in [
        "rows",
        "succeeded",
        "failed, open",
        "failed, resolved",
        "invalid",
        "skipped",
    ] {
        let _ = write!(page, "<th class=\"n\">{h}</th>");
    }
    page.push_str("<th class=\"n\">in flight</th><th class=\"n\">pending</th></tr>\n");
    let mut rows: Vec<(&str, &super::model::Standing)> = r
        .runs
        .iter()
        .map(|x| (x.run.as_str(), &x.standing))
        .collect();
    if r.runs.len() > 1 {
        rows.push(("total", t));
    }
    for (name, s) in rows {
        let _ = write!(page, "<tr><td>{}</td>", esc(name));
        for v in [
            s.total,
            s.counts.succeeded,
            s.failed_open,
            s.failed_resolved,
            s.counts.invalid,
            s.counts.skipped,
            s.counts.in_flight,
            s.counts.pending,
        ] {
            let _ = write!(page, "<td class=\"n\">{}</td>", num(v));
        }
        page.push_str("</tr>\n");
    }
    page.push_str("</table></div>\n");
    Ok(())
}

fn over_time(page: &mut String, r: &Report) -> Result<(), ChartError> {
    page.push_str("<h2 id=\"over-time\">Over time</h2>\n");
    let Some(t) = r.timeline.as_ref().filter(|t| !t.buckets.is_empty()) else {
        page.push_str("<p>No request has been sent yet.</p>\n");
        return Ok(());
    };
    let first = t.buckets[0].start;
    let width = t.bucket_seconds * 1000;
    let nightly = t.bucket == "night" || t.bucket_seconds >= 86_400;
    let label = move |x: &f64| {
        let ms = first + (*x * width as f64) as i64;
        let text = time_text(ms);
        if nightly {
            text[5..10].to_owned()
        } else {
            text[11..16].to_owned()
        }
    };
    let _ = writeln!(
        page,
        "<p class=\"note\">From {} to {} (UTC), one point per {}.</p>",
        time_text(first),
        time_text(t.buckets[t.buckets.len() - 1].start + width),
        esc(&t.bucket)
    );
    let _ = write!(
        page,
        "<figure><figcaption>Rows finished per {}</figcaption><div class=\"scroll\">{}</div>\
         <div class=\"legend\">",
        esc(&t.bucket),
        charts::finished(t, &label)?
    );
    legend(page, "succeeded", colour::SUCCEEDED);
    legend(
        page,
        "failed (rows still failed, by their last outcome)",
        colour::FAILED_OPEN,
    );
    let _ = write!(
        page,
        "</div></figure>\n<figure><figcaption>Requests per second, against the limit in force\
         </figcaption><div class=\"scroll\">{}</div><div class=\"legend\">",
        charts::requests(t, &label)?
    );
    legend(page, "requests/s while draining", colour::REQUESTS);
    legend(
        page,
        "limit in force (cut on 429 answers, then climbing back)",
        colour::LIMIT,
    );
    legend(page, "configured rate (dashed)", colour::CONFIGURED);
    legend(page, "▲ 429 answers: the run paused", colour::THROTTLED);
    legend(page, "halted: key refused (auth/forbidden)", colour::HALT);
    let _ = write!(
        page,
        "</div></figure>\n<figure><figcaption>Request duration</figcaption>\
         <div class=\"scroll\">{}</div><div class=\"legend\">",
        charts::latency(t, &label)?
    );
    legend(page, "p50", colour::P50);
    legend(page, "p95", colour::P95);
    legend(page, "p99", colour::P99);
    page.push_str("</div></figure>\n");
    marks(page, t, nightly);
    Ok(())
}

/// The 429 pauses and halts as a list, so they read in print and on a phone too.
fn marks(page: &mut String, t: &Timeline, nightly: bool) {
    let marked: Vec<&Bucket> = t
        .buckets
        .iter()
        .filter(|b| b.requests.throttled + b.requests.halts() > 0)
        .collect();
    if marked.is_empty() {
        page.push_str("<p class=\"note\">No 429 answer and no halt.</p>\n");
        return;
    }
    page.push_str(
        "<h3>429 pauses and halts</h3>\n<div class=\"scroll\"><table><tr><th>from</th>\
         <th class=\"n\">429 answers</th><th class=\"n\">halting answers</th>\
         <th class=\"n\">requests/s</th><th class=\"n\">lowest limit</th></tr>\n",
    );
    let shown: Vec<&&Bucket> = marked
        .iter()
        .filter(|b| b.requests.halts() > 0)
        .chain(marked.iter().filter(|b| b.requests.halts() == 0))
        .take(MARKS_SHOWN)
        .collect();
    let mut shown = shown;
    shown.sort_by_key(|b| b.start);
    for b in shown {
        let when = time_text(b.start);
        let when = if nightly { &when[..10] } else { &when[..] };
        let _ = writeln!(
            page,
            "<tr><td>{when}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{:.2}</td><td class=\"n\">{}</td></tr>",
            num(b.requests.throttled),
            num(b.requests.halts()),
            b.requests_per_second,
            b.rate_limit_min
                .map_or("none".into(), |l| format!("{l:.1}"))
        );
    }
    page.push_str("</table></div>\n");
    if marked.len() > MARKS_SHOWN {
        let throttled: i64 = marked.iter().map(|b| b.requests.throttled).sum();
        let _ = writeln!(
            page,
            "<p class=\"note\">{} intervals had 429 answers or halts ({} 429 answers in all); \
             the first {MARKS_SHOWN} are listed, halts first. <code>--json</code> has them all.</p>",
            marked.len(),
            num(throttled)
        );
    }
}

fn problems(page: &mut String, r: &Report) {
    let p = &r.problems;
    page.push_str("<h2 id=\"problems\">What went wrong</h2>\n<h3>Requests by outcome</h3>\n");
    class_table(page, &p.requests);
    if p.failed_classes.is_empty() {
        page.push_str("<p>No row has failed.</p>\n");
    } else {
        page.push_str(
            "<h3>Failed rows by error class</h3>\n<table><tr><th>class</th>\
                       <th class=\"n\">rows</th></tr>\n",
        );
        for (class, n) in &p.failed_classes {
            let _ = writeln!(
                page,
                "<tr><td>{}</td><td class=\"n\">{}</td></tr>",
                esc(class),
                num(*n)
            );
        }
        page.push_str("</table>\n<h3>Most frequent failures</h3>\n");
        groups(page, &p.failed_messages, true);
        commands(page, "Export the failed rows:", &p.export_failed);
    }
    if p.invalid_reasons.is_empty() {
        page.push_str("<p>No row was invalid.</p>\n");
    } else {
        page.push_str("<h3>Invalid rows by reason</h3>\n");
        groups(page, &p.invalid_reasons, false);
        commands(
            page,
            "Export the invalid rows (each carries its reason):",
            &p.export_invalid,
        );
    }
}

fn class_table(page: &mut String, c: &ClassCounts) {
    let rows = [
        ("success", c.success, "row applied"),
        ("rejected", c.rejected, "Kapture refused the row for good"),
        ("transient", c.transient, "retried with backoff"),
        (
            "transient_in_doubt",
            c.transient_in_doubt,
            "no answer after sending; retried",
        ),
        (
            "throttled",
            c.throttled,
            "429: the run paused, no attempt charged",
        ),
        ("auth", c.auth, "key refused: the run halted"),
        (
            "forbidden",
            c.forbidden,
            "permission refused: the run halted",
        ),
        ("other", c.other, ""),
    ];
    page.push_str(
        "<table><tr><th>class</th><th class=\"n\">requests</th>\
                   <th class=\"hide-narrow\">meaning</th></tr>\n",
    );
    for (name, n, meaning) in rows.into_iter().filter(|r| r.1 > 0) {
        let _ = writeln!(
            page,
            "<tr><td>{name}</td><td class=\"n\">{}</td><td class=\"hide-narrow\">{meaning}</td></tr>",
            num(n)
        );
    }
    let _ = writeln!(
        page,
        "<tr><th>all</th><th class=\"n\">{}</th><th class=\"hide-narrow\"></th></tr></table>",
        num(c.total())
    );
}

fn groups(page: &mut String, groups: &[Group], with_class: bool) {
    let columns = if with_class { 4 } else { 3 };
    page.push_str("<div class=\"scroll\"><table><tr>");
    if with_class {
        page.push_str("<th>class</th>");
    }
    page.push_str(
        "<th>message</th><th class=\"n\">rows</th><th>examples (ticket, file:line)</th></tr>\n",
    );
    for Group { group: g, exports } in groups {
        let class = if exports.is_empty() {
            ""
        } else {
            " class=\"grp\""
        };
        let _ = write!(page, "<tr{class}>");
        if with_class {
            let _ = write!(page, "<td>{}</td>", esc(&g.class));
        }
        let _ = write!(
            page,
            "<td class=\"msg\">{}</td><td class=\"n\">{}</td><td><ul class=\"ex\">",
            esc(&g.message),
            num(g.count)
        );
        for e in &g.examples {
            let _ = write!(
                page,
                "<li>{} <code>{}:{}</code></li>",
                esc(e.ticket_id.as_deref().unwrap_or("(no ticket)")),
                esc(&e.file),
                e.line
            );
        }
        page.push_str("</ul></td></tr>\n");
        for x in exports {
            // `--grep` takes a substring: say so when other messages hold this one.
            let more = match x.exported - x.rows {
                0 => String::new(),
                n => format!(
                    " <span class=\"note\">(also takes {} rows whose message contains this \
                     one)</span>",
                    num(n)
                ),
            };
            let _ = writeln!(
                page,
                "<tr class=\"cmd\"><td colspan=\"{columns}\">export: <code>{}</code>{more}</td></tr>",
                esc(&x.command)
            );
        }
    }
    page.push_str("</table></div>\n");
}

fn commands(page: &mut String, title: &str, commands: &[String]) {
    let _ = write!(page, "<p>{title}</p><ul>");
    for c in commands {
        let _ = write!(page, "<li><code>{}</code></li>", esc(c));
    }
    page.push_str("</ul>\n");
}

fn settings(page: &mut String, r: &Report) {
    page.push_str("<h2 id=\"settings\">Settings</h2>\n");
    for run in &r.settings {
        if r.settings.len() > 1 {
            let _ = writeln!(page, "<h3>{}</h3>", esc(&run.run));
        }
        if run.drains.is_empty() {
            page.push_str(
                "<p class=\"note\">No drain recorded (drains before kapsync recorded \
                           their settings, or none yet).</p>\n",
            );
        } else {
            page.push_str(
                "<div class=\"scroll\"><table><tr><th>drain started</th><th>target</th>\
                 <th class=\"n\">rate/s</th><th class=\"n\">burst</th>\
                 <th class=\"n\">concurrency</th><th class=\"n\">attempts</th>\
                 <th class=\"n\">timeout</th><th>kapsync</th></tr>\n",
            );
            for d in &run.drains {
                let s = &d.settings;
                let rate = if s.rate <= 0.0 {
                    "no limit".into()
                } else {
                    s.rate.to_string()
                };
                let _ = writeln!(
                    page,
                    "<tr><td>{}</td><td><code>{}</code></td><td class=\"n\">{rate}</td>\
                     <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
                     <td class=\"n\">{} s</td><td>{}</td></tr>",
                    time_text(d.started_at),
                    esc(&target_text(&s.target)),
                    s.burst,
                    s.concurrency,
                    s.max_attempts,
                    s.timeout_secs,
                    esc(&s.version)
                );
            }
            page.push_str("</table></div>\n");
        }
        if !run.mappings.is_empty() {
            page.push_str("<table><tr><th>mapping file</th><th>digest</th></tr>\n");
            for m in &run.mappings {
                let name = if m.mapping.is_empty() {
                    "(none: columns named as Kapture's fields)"
                } else {
                    &m.mapping
                };
                let _ = writeln!(
                    page,
                    "<tr><td>{}</td><td><code>{}</code></td></tr>",
                    esc(name),
                    esc(&m.digest)
                );
            }
            page.push_str("</table>\n");
        }
    }
    page.push_str("<p class=\"note\">The API token is never stored, so it is not shown.</p>\n");
}

/// `acme.kapturecrm.com (https)`: the target without its scheme prefix, so the page holds
/// no URL at all (nothing a viewer could follow or fetch).
fn target_text(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => format!("{} ({scheme})", rest.trim_end_matches('/')),
        None => url.to_owned(),
    }
}

fn legend(page: &mut String, name: &str, c: (u8, u8, u8)) {
    let _ = write!(
        page,
        "<span><i class=\"sw\" style=\"background:{}\"></i>{}</span>",
        colour::css(c),
        esc(name)
    );
}

/// HTML text escaping (also safe inside double-quoted attributes).
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\n' && c != '\t' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// `2026-12-01 02:30` from Unix milliseconds (UTC).
fn time_text(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    let text = humantime::format_rfc3339_seconds(t).to_string();
    format!("{} {}", &text[..10], &text[11..16])
}

fn duration_text(secs: f64) -> String {
    let secs = secs.ceil() as u64;
    let rounded = if secs > 3_600 { secs / 60 * 60 } else { secs };
    humantime::format_duration(std::time::Duration::from_secs(rounded)).to_string()
}

/// A count with thousands separators.
fn num(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(d);
    }
    if n < 0 { format!("-{out}") } else { out }
}
