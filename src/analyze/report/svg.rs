//! The inline SVG charts of report.html: no scripts, nothing loaded from elsewhere.

use super::super::bootstrap::Estimate;
use super::super::insights::*;
use super::format::*;
use super::html::esc;
use std::fmt::Write as _;

pub(super) const LEVEL_COLORS: [&str; 3] = ["#d4d4d8", "#93c5fd", "#1d4ed8"];
pub(super) const VIEW_W: f64 = 400.0;

/// Stacked bars of the level shares, one per mechanism.
pub(super) fn svg_levels(mechs: &[MechanismLevels]) -> String {
    let (left, right, row) = (34.0, VIEW_W - 4.0, 30.0);
    let height = row * mechs.len() as f64 + 30.0;
    let mut s = format!(
        r#"<svg viewBox="0 0 {VIEW_W} {height}" role="img" aria-label="Share of each level per mechanism">"#
    );
    for (k, m) in mechs.iter().enumerate() {
        let y = k as f64 * row + 4.0;
        let _ = write!(
            s,
            r#"<text x="0" y="{}" class="lab">{}</text>"#,
            y + 16.0,
            m.mechanism
        );
        let mut x = left;
        for (l, color) in LEVEL_COLORS.iter().enumerate() {
            let w = (m.shares[l].value.max(0.0)) * (right - left);
            let _ = write!(
                s,
                r#"<rect x="{x:.1}" y="{y:.1}" width="{w:.1}" height="22" fill="{color}"><title>{} level {l}: {}</title></rect>"#,
                m.mechanism,
                pct(m.shares[l].value)
            );
            if w > 30.0 {
                let _ = write!(
                    s,
                    r#"<text x="{:.1}" y="{:.1}" class="{}" text-anchor="middle">{}</text>"#,
                    x + w / 2.0,
                    y + 15.5,
                    if l == 2 { "inv" } else { "val" },
                    pct(m.shares[l].value)
                );
            }
            x += w;
        }
    }
    let y = row * mechs.len() as f64 + 14.0;
    for (l, color) in LEVEL_COLORS.iter().enumerate() {
        let x = left + l as f64 * 90.0;
        let _ = write!(
            s,
            r#"<rect x="{x}" y="{}" width="12" height="12" fill="{color}"/><text x="{}" y="{}" class="lab">{} ({l})</text>"#,
            y - 10.0,
            x + 16.0,
            y,
            level_name(l as u8)
        );
    }
    s + "</svg>"
}

/// Vertical bars with interval whiskers.
pub(super) fn svg_bars(bars: &[(String, Estimate)], f: fn(f64) -> String, label: &str) -> String {
    let (top, bottom, left) = (18.0, 170.0, 6.0);
    let max = bars
        .iter()
        .map(|(_, e)| e.high.unwrap_or(e.value))
        .filter(|x| x.is_finite())
        .fold(0.0f64, f64::max)
        .max(1e-9);
    let slot = (VIEW_W - left) / bars.len() as f64;
    let y_of = |v: f64| bottom - (v.max(0.0) / max) * (bottom - top);
    let mut s = format!(
        r#"<svg viewBox="0 0 {VIEW_W} 200" role="img" aria-label="{}">"#,
        esc(label)
    );
    let _ = write!(
        s,
        r#"<line x1="0" x2="{VIEW_W}" y1="{bottom}" y2="{bottom}" class="axis"/>"#
    );
    for (k, (name, e)) in bars.iter().enumerate() {
        let cx = left + slot * (k as f64 + 0.5);
        let w = (slot * 0.6).min(60.0);
        if e.value.is_finite() {
            let y = y_of(e.value);
            let _ = write!(
                s,
                r#"<rect x="{:.1}" y="{y:.1}" width="{w:.1}" height="{:.1}" fill="{}"><title>{}: {}</title></rect>"#,
                cx - w / 2.0,
                bottom - y,
                LEVEL_COLORS[1],
                esc(name),
                with_ci(e, f)
            );
            if let (Some(lo), Some(hi)) = (e.low, e.high) {
                let _ = write!(
                    s,
                    r#"<path d="M{cx:.1} {:.1}V{:.1}M{:.1} {:.1}h10M{:.1} {:.1}h10" class="ci"/>"#,
                    y_of(lo),
                    y_of(hi),
                    cx - 5.0,
                    y_of(lo),
                    cx - 5.0,
                    y_of(hi)
                );
            }
            let _ = write!(
                s,
                r#"<text x="{cx:.1}" y="{:.1}" class="val" text-anchor="middle">{}</text>"#,
                y_of(e.high.unwrap_or(e.value)) - 4.0,
                f(e.value)
            );
        }
        let _ = write!(
            s,
            r#"<text x="{cx:.1}" y="{}" class="lab" text-anchor="middle">{}</text>"#,
            bottom + 18.0,
            esc(name)
        );
    }
    s + "</svg>"
}

/// Dots with interval whiskers on a horizontal axis of relative change, zero marked.
pub(super) fn svg_forest(rows: &[(String, Estimate)], label: &str) -> String {
    let (left, right, row) = (92.0, VIEW_W - 10.0, 24.0);
    let mut lo = 0.0f64;
    let mut hi = 0.0f64;
    for (_, e) in rows {
        for v in [Some(e.value), e.low, e.high].into_iter().flatten() {
            if v.is_finite() {
                lo = lo.min(v);
                hi = hi.max(v);
            }
        }
    }
    let pad = ((hi - lo) * 0.08).max(0.02);
    let (lo, hi) = (lo - pad, hi + pad);
    let x_of = |v: f64| left + (v - lo) / (hi - lo) * (right - left);
    let height = row * rows.len() as f64 + 28.0;
    let mut s = format!(
        r#"<svg viewBox="0 0 {VIEW_W} {height}" role="img" aria-label="{}">"#,
        esc(label)
    );
    let zero = x_of(0.0);
    let _ = write!(
        s,
        r#"<line x1="{zero:.1}" x2="{zero:.1}" y1="0" y2="{:.1}" class="zero"/>"#,
        height - 22.0
    );
    for (k, (name, e)) in rows.iter().enumerate() {
        let y = k as f64 * row + 14.0;
        let _ = write!(
            s,
            r#"<text x="0" y="{:.1}" class="lab">{}</text>"#,
            y + 4.0,
            esc(name)
        );
        if let (Some(l), Some(h)) = (e.low, e.high) {
            let _ = write!(
                s,
                r#"<line x1="{:.1}" x2="{:.1}" y1="{y:.1}" y2="{y:.1}" class="ci"/>"#,
                x_of(l),
                x_of(h)
            );
        }
        if e.value.is_finite() {
            let _ = write!(
                s,
                r#"<circle cx="{:.1}" cy="{y:.1}" r="4.5" fill="{}"><title>{}: {}</title></circle>"#,
                x_of(e.value),
                LEVEL_COLORS[2],
                esc(name),
                with_ci(e, change)
            );
        }
    }
    let axis_y = height - 8.0;
    // Zero, and the extremes where they do not crowd it.
    let mut ticks = vec![0.0];
    for v in [lo + pad, hi - pad] {
        if (x_of(v) - zero).abs() > 44.0 {
            ticks.push(v);
        }
    }
    for v in ticks {
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{axis_y:.1}" class="lab" text-anchor="middle">{}</text>"#,
            x_of(v),
            change(v)
        );
    }
    s + "</svg>"
}

/// A line through binned means with interval whiskers.
pub(super) fn svg_line(bins: &[ExperienceBin], label: &str) -> String {
    let (top, bottom, left, right) = (14.0, 160.0, 30.0, VIEW_W - 10.0);
    let mut lo = f64::INFINITY;
    let mut hi = f64::NEG_INFINITY;
    for b in bins {
        for v in [
            Some(b.mean_total.value),
            b.mean_total.low,
            b.mean_total.high,
        ]
        .into_iter()
        .flatten()
        {
            if v.is_finite() {
                lo = lo.min(v);
                hi = hi.max(v);
            }
        }
    }
    if !lo.is_finite() {
        return String::new();
    }
    let pad = ((hi - lo) * 0.1).max(0.1);
    let (lo, hi) = ((lo - pad).max(0.0), (hi + pad).min(6.0));
    let y_of = |v: f64| bottom - (v - lo) / (hi - lo) * (bottom - top);
    let slot = (right - left) / bins.len().max(1) as f64;
    let x_of = |k: usize| left + slot * (k as f64 + 0.5);
    let mut s = format!(
        r#"<svg viewBox="0 0 {VIEW_W} 200" role="img" aria-label="{}">"#,
        esc(label)
    );
    for v in [lo, (lo + hi) / 2.0, hi] {
        let _ = write!(
            s,
            r#"<text x="0" y="{:.1}" class="lab">{v:.1}</text><line x1="{left}" x2="{right}" y1="{:.1}" y2="{:.1}" class="grid"/>"#,
            y_of(v) + 4.0,
            y_of(v),
            y_of(v)
        );
    }
    let points: Vec<String> = bins
        .iter()
        .enumerate()
        .filter(|(_, b)| b.mean_total.value.is_finite())
        .map(|(k, b)| format!("{:.1},{:.1}", x_of(k), y_of(b.mean_total.value)))
        .collect();
    let _ = write!(
        s,
        r#"<polyline points="{}" class="trend"/>"#,
        points.join(" ")
    );
    for (k, b) in bins.iter().enumerate() {
        let x = x_of(k);
        if let (Some(l), Some(h)) = (b.mean_total.low, b.mean_total.high) {
            let _ = write!(
                s,
                r#"<line x1="{x:.1}" x2="{x:.1}" y1="{:.1}" y2="{:.1}" class="ci"/>"#,
                y_of(l),
                y_of(h)
            );
        }
        if b.mean_total.value.is_finite() {
            let _ = write!(
                s,
                r#"<circle cx="{x:.1}" cy="{:.1}" r="3.5" fill="{}"><title>{}: {} ({} responses)</title></circle>"#,
                y_of(b.mean_total.value),
                LEVEL_COLORS[2],
                esc(&b.label),
                with_ci(&b.mean_total, number),
                b.responses
            );
        }
        let short = b.label.trim_end_matches(" days");
        let _ = write!(
            s,
            r#"<text x="{x:.1}" y="{}" class="lab" text-anchor="middle">{}</text>"#,
            bottom + 18.0,
            esc(short)
        );
    }
    s + "</svg>"
}
