//! The scenario table of BENCHMARKS.md: each scenario run with `--record FILE` writes its row
//! there, replacing the row of the same name, between two markers.

use std::path::Path;
use std::time::SystemTime;

/// The line that opens the scenario table.
pub(crate) const BEGIN: &str = "<!-- botload:scenarios -->";
/// The line that closes it.
pub(crate) const END: &str = "<!-- /botload:scenarios -->";
const HEADER: &str = "| scenario | result | goal | met | run on |\n| --- | --- | --- | --- | --- |";

/// Whether a figure met its goal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Met.
    Met,
    /// Missed: the table says so, and BENCHMARKS.md says where the time goes.
    Missed,
    /// The scenario has no goal.
    #[allow(dead_code, reason = "for the variants without a goal (queue-drain with 1 process)")]
    NoGoal,
}

/// One row of the table.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    /// The scenario and its variant, unique in the table (`queue-drain 10,000 × 2 processes`).
    pub(crate) name: String,
    /// The figures, short (`52,100 events/s; p99 4.1 ms; bot 210 MiB`).
    pub(crate) result: String,
    /// The goal (`≥ 300,000 events/s`), or empty.
    pub(crate) goal: String,
    /// Whether the result met it.
    pub(crate) verdict: Verdict,
}

impl Row {
    fn line(&self, date: &str) -> String {
        let met = match self.verdict {
            Verdict::Met => "yes",
            Verdict::Missed => "**no**",
            Verdict::NoGoal => "",
        };
        let cell = |s: &str| s.replace('|', "\\|").replace('\n', " ");
        format!(
            "| {} | {} | {} | {met} | {date} |",
            cell(&self.name),
            cell(&self.result),
            cell(&self.goal)
        )
    }
}

/// Writes `row` into the table of the Markdown file at `path`: replaces the row of the same name,
/// or adds it at the end of the table; adds the table (with its markers) at the end of the file
/// when it has none.
pub(crate) fn record(path: &Path, row: &Row) -> Result<(), String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let date = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    let updated = with_row(&text, row, &date[..10]);
    std::fs::write(path, updated).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

fn with_row(text: &str, row: &Row, date: &str) -> String {
    let line = row.line(date);
    let prefix = format!("| {} |", row.name.replace('|', "\\|"));
    let (Some(begin), Some(end)) = (text.find(BEGIN), text.find(END)) else {
        let mut out = text.trim_end().to_owned();
        out.push_str(&format!("\n\n{BEGIN}\n{HEADER}\n{line}\n{END}\n"));
        return out;
    };
    let body_start = begin + BEGIN.len();
    let mut rows: Vec<String> = text[body_start..end]
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with('|'))
        .map(str::to_owned)
        .collect();
    if rows.len() < 2 {
        rows = HEADER.lines().map(str::to_owned).collect();
    }
    match rows.iter_mut().skip(2).find(|r| r.starts_with(&prefix)) {
        Some(existing) => *existing = line,
        None => rows.push(line),
    }
    format!(
        "{}\n{}\n{}",
        &text[..body_start],
        rows.join("\n"),
        &text[end..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(name: &str, result: &str, verdict: Verdict) -> Row {
        Row {
            name: name.to_owned(),
            result: result.to_owned(),
            goal: "≥ 10 events/s".to_owned(),
            verdict,
        }
    }

    #[test]
    fn a_row_is_added_then_replaced_and_the_rest_is_kept() {
        let text = "# Benchmarks\n\nintro\n";
        let once = with_row(text, &row("a", "5 events/s", Verdict::Missed), "2026-11-30");
        assert!(once.starts_with("# Benchmarks\n\nintro\n\n<!-- botload:scenarios -->\n"));
        assert!(once.contains("| a | 5 events/s | ≥ 10 events/s | **no** | 2026-11-30 |"));
        let twice = with_row(&once, &row("b|c", "1", Verdict::NoGoal), "2026-11-30");
        let thrice = with_row(&twice, &row("a", "12 events/s", Verdict::Met), "2026-12-01");
        let table: Vec<&str> = thrice
            .lines()
            .skip_while(|l| *l != BEGIN)
            .take_while(|l| *l != END)
            .collect();
        assert_eq!(
            table,
            [
                BEGIN,
                "| scenario | result | goal | met | run on |",
                "| --- | --- | --- | --- | --- |",
                "| a | 12 events/s | ≥ 10 events/s | yes | 2026-12-01 |",
                "| b\\|c | 1 | ≥ 10 events/s |  | 2026-11-30 |",
            ]
        );
        assert!(thrice.ends_with(&format!("{END}\n")));
        let after = format!("{thrice}\n## After\ntext\n");
        let again = with_row(&after, &row("b|c", "2", Verdict::NoGoal), "2026-12-02");
        assert!(again.contains("| b\\|c | 2 |"));
        assert!(!again.contains("| b\\|c | 1 |"));
        assert!(again.ends_with("## After\ntext\n"));
        assert!(again.starts_with("# Benchmarks\n\nintro\n"));
    }
}
