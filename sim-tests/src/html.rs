//! The picture of one simulator run (issue 18 item 5): a self-contained HTML page
//! with one lane per simulated machine (the pageservers `node-N`, the control
//! plane, the clients, the object store, the nemesis), time down the page, each
//! trace line a small mark in its lane with the whole line on hover, fault
//! firings, kills and the violation in their own colours, and a header with the
//! seed, the settings, the violation and the replay command. No script, no
//! external asset: inline CSS only.
//!
//! Rows follow the trace's order (the order things happened in the simulation);
//! consecutive lines with one time share a row, and a gap in time leaves a gap in
//! the page (at most [`MAX_GAP_PX`]). A node's own lines carry its clock, which a
//! clock fault skews or jumps; the simulator's lines (`runtime-sim`'s `sim_trace`)
//! carry the simulator's.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The largest gap, in pixels, between two rows far apart in time.
pub const MAX_GAP_PX: u64 = 40;

/// What the header shows.
#[derive(Clone, Debug, Default)]
pub struct Header {
    /// E.g. `cluster seed 1 failed`.
    pub title: String,
    /// Rows of the header's table, in order (seed, settings, …).
    pub fields: Vec<(String, String)>,
    /// The run's violation, marked at the end of every lane; `None` when it passed.
    pub violation: Option<String>,
    /// The one-line command that replays the run.
    pub replay: String,
}

/// The kinds of mark, each with its colour and its name in the legend.
const KINDS: [(&str, &str, &str); 8] = [
    ("f", "#e8590c", "fault fired"),
    ("k", "#111111", "kill, restart, heal"),
    ("q", "#1c7ed6", "request sent"),
    ("a", "#37b24d", "answer received"),
    ("s", "#9c6644", "object store write or delete"),
    ("i", "#a5d8ff", "machine input"),
    ("o", "#ced4da", "machine effect"),
    ("v", "#d6336c", "violation"),
];

/// One parsed trace line: `{time}s {lane} {machine} {op} {direction} {what}`.
struct Event<'a> {
    ms: u64,
    lane: &'a str,
    kind: &'static str,
    line: &'a str,
}

fn parse(line: &str) -> Option<Event<'_>> {
    let mut words = line.splitn(6, ' ');
    let time = words.next()?.strip_suffix('s')?;
    let (secs, millis) = time.split_once('.')?;
    let ms = secs.parse::<u64>().ok()?.checked_mul(1000)?.checked_add(millis.parse().ok()?)?;
    let lane = words.next()?;
    let machine = words.next()?;
    let _op = words.next()?;
    let direction = words.next()?;
    let kind = match (lane, machine, direction) {
        (_, "fault", _) => "f",
        (_, "nemesis", _) => "k",
        (_, "request", "effect") => "q",
        (_, "request", _) => "a",
        ("object-store", _, _) => "s",
        (_, _, "input") => "i",
        _ => "o",
    };
    Some(Event { ms, lane, kind, line })
}

/// Lanes in the picture's order: the nemesis, the pageservers by number, the
/// control plane, the clients, anything else, the object store last.
fn lane_order(lane: &str) -> (u8, u64, String) {
    let rank = match lane {
        "nemesis" => 0,
        "control-plane" => 2,
        "client" => 3,
        "chaos" => 4,
        "object-store" => 6,
        l if l.starts_with("node-") => 1,
        _ => 5,
    };
    let number = lane.strip_prefix("node-").and_then(|n| n.parse().ok()).unwrap_or(0);
    (rank, number, lane.to_string())
}

/// Escapes text for an HTML attribute or element.
fn escape(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
}

fn escaped(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    escape(&mut out, text);
    out
}

/// The page for a run with `header` and trace `lines` (lines that do not parse as
/// trace lines are counted in the header and left out).
pub fn render(header: &Header, lines: &[String]) -> String {
    let events: Vec<Event<'_>> = lines.iter().filter_map(|l| parse(l)).collect();
    let mut lanes: Vec<&str> = events.iter().map(|e| e.lane).collect();
    lanes.sort_by_key(|l| lane_order(l));
    lanes.dedup();
    let column: BTreeMap<&str, usize> =
        lanes.iter().enumerate().map(|(i, l)| (*l, i + 2)).collect();
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for e in &events {
        *counts.entry(e.kind).or_default() += 1;
    }

    let mut out = String::with_capacity(4096 + lines.iter().map(|l| l.len() + 40).sum::<usize>());
    out.push_str("<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8><title>");
    escape(&mut out, &header.title);
    out.push_str("</title>\n<style>\n");
    style(&mut out, lanes.len());
    out.push_str("</style></head><body>\n<h1>");
    escape(&mut out, &header.title);
    out.push_str("</h1>\n<table class=h>\n");
    let mut fields = header.fields.clone();
    if let Some(v) = &header.violation {
        fields.push(("violation".into(), v.clone()));
    }
    fields.push(("replay".into(), header.replay.clone()));
    let summary = format!(
        "{} events in {} lanes: {} faults fired, {} kills/restarts/heals, {} requests, {} object-store writes and deletes{}",
        events.len(),
        lanes.len(),
        counts.get("f").unwrap_or(&0),
        counts.get("k").unwrap_or(&0),
        counts.get("q").unwrap_or(&0),
        counts.get("s").unwrap_or(&0),
        match lines.len() - events.len() {
            0 => String::new(),
            n => format!(" ({n} lines not in the trace's shape left out)"),
        }
    );
    fields.push(("trace".into(), summary));
    for (name, value) in &fields {
        let class = if name == "violation" { " class=v" } else { "" };
        let _ =
            writeln!(out, "<tr><th>{}</th><td{class}>{}</td></tr>", escaped(name), escaped(value));
    }
    out.push_str("</table>\n<p class=legend>");
    for (class, _, name) in KINDS {
        let _ = write!(out, "<i class={class}></i> {name} &nbsp; ");
    }
    out.push_str("(hover a mark for its trace line)</p>\n<div class=\"r lanes\"><span>time</span>");
    for lane in &lanes {
        let _ = write!(out, "<span>{}</span>", escaped(lane));
    }
    out.push_str("</div>\n");
    rows(&mut out, &events, &column);
    if let Some(v) = &header.violation {
        let last = events.last().map_or(0, |e| e.ms);
        let _ = writeln!(
            out,
            "<div class=\"r end\"><span class=t>{}</span><span class=all><i class=v title=\"{}\"></i> {}</span></div>",
            time(last),
            escaped(v),
            escaped(v)
        );
    }
    out.push_str("</body></html>\n");
    out
}

fn time(ms: u64) -> String {
    format!("{}.{:03}s", ms / 1000, ms % 1000)
}

fn style(out: &mut String, lanes: usize) {
    out.push_str(
        "body{font:12px/1.3 system-ui,sans-serif;margin:8px}h1{font-size:16px;margin:4px 0}\n\
         table.h{border-collapse:collapse;margin-bottom:6px}table.h th{text-align:left;padding:1px 8px 1px 0;vertical-align:top}\n\
         table.h td{font-family:monospace;white-space:pre-wrap;word-break:break-all}td.v{color:#d6336c;font-weight:bold}\n",
    );
    let _ = writeln!(
        out,
        ".r{{display:grid;grid-template-columns:5.5em repeat({lanes},minmax(0,1fr));border-top:1px solid #f1f3f5}}"
    );
    out.push_str(
        ".lanes{position:sticky;top:0;background:#fff;font-weight:bold;border-bottom:2px solid #868e96;z-index:1}\n\
         .lanes span{padding:2px;overflow:hidden}.t{color:#868e96;font-family:monospace;grid-column:1}\n\
         .r>span{border-left:1px solid #e9ecef;line-height:0;padding:1px}.r>span.t{line-height:1.3}\n\
         .all{grid-column:2/-1;line-height:1.3!important;color:#d6336c;font-weight:bold;font-family:monospace}\n\
         .end{border-top:2px solid #d6336c;margin-top:6px}\n\
         i{display:inline-block;width:7px;height:7px;margin:1px;border-radius:1px}i:hover{outline:2px solid #000}\n\
         i.f,i.v,i.k{width:9px;height:9px}\n",
    );
    for (class, colour, _) in KINDS {
        let _ = writeln!(out, "i.{class}{{background:{colour}}}");
    }
    for c in 2..lanes + 2 {
        let _ = writeln!(out, ".c{c}{{grid-column:{c}}}");
    }
}

/// One row per run of consecutive events with one time; each lane's marks in its cell.
fn rows(out: &mut String, events: &[Event<'_>], column: &BTreeMap<&str, usize>) {
    let mut i = 0;
    let mut previous: Option<u64> = None;
    while i < events.len() {
        let ms = events[i].ms;
        let end = events[i..].iter().position(|e| e.ms != ms).map_or(events.len(), |n| i + n);
        let mut cells: BTreeMap<usize, String> = BTreeMap::new();
        for e in &events[i..end] {
            let cell = cells.entry(column[e.lane]).or_default();
            let _ = write!(cell, "<i class={} title=\"", e.kind);
            escape(cell, e.line);
            cell.push_str("\"></i>");
        }
        let gap = previous.map_or(0, |p| ms.abs_diff(p) / 100).min(MAX_GAP_PX);
        if gap > 1 {
            let _ = write!(out, "<div class=r style=\"margin-top:{gap}px\">");
        } else {
            out.push_str("<div class=r>");
        }
        let _ = write!(out, "<span class=t>{}</span>", time(ms));
        for (c, marks) in cells {
            let _ = write!(out, "<span class=c{c}>{marks}</span>");
        }
        out.push_str("</div>\n");
        previous = Some(ms);
        i = end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> (Header, Vec<String>) {
        let header = Header {
            title: "cluster seed 7 failed".into(),
            fields: vec![("seed".into(), "7".into()), ("settings".into(), "standard".into())],
            violation: Some("S-DEL-GEN: deleted <x> & more".into()),
            replay: "cargo run -- --seed 7 --cluster".into(),
        };
        let lines = [
            "0.000s node-1 node - input start",
            "0.000s node-1 node op0 effect DiskList tenants",
            "0.010s client request rq1 effect to node-2: Ingest { records: [] }",
            "0.010s node-2 fault - effect disk.fsync_fail fired",
            "0.250s object-store remote - input Put { size_bytes: 3 } t/x by writer 2",
            "1.000s nemesis nemesis - effect faults heal",
            "1.000s client request rq1 input from node-2: Ok(Ingested)",
            "not a trace line",
        ];
        (header, lines.iter().map(|l| l.to_string()).collect())
    }

    #[test]
    fn a_tiny_trace_has_its_lanes_rows_marks_and_header() {
        let (header, lines) = tiny();
        let html = render(&header, &lines);
        assert!(html.starts_with("<!DOCTYPE html>") && html.ends_with("</html>\n"));
        assert!(!html.contains("<script") && !html.contains("src=") && !html.contains("href="));
        // Lanes in order: nemesis, the pageservers, the clients, the object store.
        let lanes = "<div class=\"r lanes\"><span>time</span><span>nemesis</span><span>node-1</span><span>node-2</span><span>client</span><span>object-store</span></div>";
        assert!(html.contains(lanes), "{html}");
        // One row per time, the marks of one time and lane in one cell.
        let rows: Vec<&str> = html.lines().filter(|l| l.starts_with("<div class=r")).collect();
        assert_eq!(rows.len(), 4, "{rows:#?}");
        assert_eq!(
            rows[0],
            "<div class=r><span class=t>0.000s</span><span class=c3><i class=i title=\"0.000s node-1 node - input start\"></i><i class=o title=\"0.000s node-1 node op0 effect DiskList tenants\"></i></span></div>"
        );
        assert!(rows[1].contains("<span class=c4><i class=f title=\"0.010s node-2 fault - effect disk.fsync_fail fired\"></i></span>"));
        assert!(rows[1].contains("<span class=c5><i class=q title="));
        assert!(rows[2].starts_with("<div class=r style=\"margin-top:2px\">"), "{}", rows[2]);
        assert!(rows[2].contains("<span class=c6><i class=s "));
        assert!(rows[3].contains("<span class=c2><i class=k ") && rows[3].contains("<i class=a "));
        // The violation: escaped, in the header and at the end.
        let violation = "S-DEL-GEN: deleted &lt;x&gt; &amp; more";
        assert!(html.contains(&format!("<td class=v>{violation}</td>")), "{html}");
        assert!(
            html.contains(&format!(
                "<i class=v title=\"{violation}\"></i> {violation}</span></div>"
            ))
        );
        assert!(html.contains("<td>cargo run -- --seed 7 --cluster</td>"));
        let summary = "7 events in 5 lanes: 1 faults fired, 1 kills/restarts/heals, 1 requests, \
                       1 object-store writes and deletes (1 lines not in the trace's shape left out)";
        assert!(html.contains(summary), "{html}");
    }

    #[test]
    fn a_passing_run_has_no_violation_mark() {
        let (mut header, lines) = tiny();
        header.violation = None;
        let html = render(&header, &lines);
        assert!(html.contains("<i class=v></i> violation"), "the legend");
        assert!(!html.contains("<i class=v title=") && !html.contains("<td class=v>"));
        assert!(!html.contains("class=\"r end\""));
    }
}
