//! Numbers and phrases shared by every form of the report.

use super::super::bootstrap::Estimate;

pub(super) const CITATION: &str = "Ashish Sharma, Adam S. Miner, David C. Atkins and Tim Althoff. 2020. A Computational Approach to Understanding Empathy Expressed in Text-Based Mental Health Support. In Proceedings of EMNLP 2020.";

pub(super) fn pct(x: f64) -> String {
    if !x.is_finite() {
        return "n/a".into();
    }
    let p = x * 100.0;
    if p.abs() >= 10.0 || p == 0.0 {
        format!("{p:.0}%")
    } else {
        format!("{p:.1}%")
    }
}

/// A relative change: "+45%" / "−12%".
pub(super) fn change(x: f64) -> String {
    if !x.is_finite() {
        return "n/a".into();
    }
    let p = x * 100.0;
    if p < 0.0 {
        format!("−{:.0}%", -p)
    } else {
        format!("+{p:.0}%")
    }
}

pub(super) fn number(x: f64) -> String {
    if !x.is_finite() {
        "n/a".into()
    } else if x < 0.0 {
        format!("−{:.2}", -x)
    } else {
        format!("{x:.2}")
    }
}

/// "value (low to high)" with the given formatter.
pub(super) fn with_ci(e: &Estimate, f: fn(f64) -> String) -> String {
    match (e.low, e.high) {
        (Some(l), Some(h)) => format!("{} ({} to {})", f(e.value), f(l), f(h)),
        _ => format!("{} (no interval)", f(e.value)),
    }
}

pub(super) fn value_format(rate: bool) -> fn(f64) -> String {
    if rate {
        pct
    } else {
        number
    }
}

pub(super) fn level_name(level: u8) -> &'static str {
    ["none", "weak", "strong"][level as usize]
}
