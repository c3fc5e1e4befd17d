//! The distributor page's earnings charts: inline SVG bars, drawn on the
//! server with integer arithmetic on fen (no floating point touches money),
//! with a `<title>` and `<desc>` for screen readers and the same figures in
//! a table beside it.

use maud::{Markup, html};

use crate::domain::money::Money;

/// Width of one bar's slot and of the bar in it, in SVG units.
const SLOT_WIDTH: i64 = 10;
const BAR_WIDTH: i64 = 8;
/// Height of the tallest bar, and room below for the axis labels.
const PLOT_HEIGHT: i64 = 100;
const LABEL_HEIGHT: i64 = 14;

/// One bar: its period (`YYYY-MM-DD` or `YYYY-MM`), what is shown under it,
/// and its amount.
pub(crate) struct Bar {
    pub period: String,
    pub label: String,
    pub amount: Money,
}

/// Each bar's height in SVG units: proportional to its amount, the largest
/// at [`PLOT_HEIGHT`]; a positive amount too small to see is one unit tall;
/// zero and negative amounts (a period of clawbacks) have none.
fn heights(bars: &[Bar]) -> Vec<i64> {
    let largest = bars
        .iter()
        .map(|bar| bar.amount.fen())
        .max()
        .unwrap_or(0)
        .max(0);
    bars.iter()
        .map(|bar| {
            let fen = bar.amount.fen();
            if fen <= 0 || largest == 0 {
                return 0;
            }
            // i128: fen × height cannot overflow.
            let height = i128::from(fen) * i128::from(PLOT_HEIGHT) / i128::from(largest);
            i64::try_from(height).unwrap_or(PLOT_HEIGHT).max(1)
        })
        .collect()
}

/// The chart `id` of `bars`, titled `title`, with `summary` as its
/// description; the last bar and every `label_every`-th before it are
/// labelled.
pub(crate) fn bar_chart(
    id: &str,
    title: &str,
    summary: &str,
    bars: &[Bar],
    label_every: usize,
) -> Markup {
    let width = SLOT_WIDTH * i64::try_from(bars.len()).unwrap_or(0);
    let height = PLOT_HEIGHT + LABEL_HEIGHT;
    let title_id = format!("{id}-title");
    let desc_id = format!("{id}-desc");
    let step = label_every.max(1);
    html! {
        svg.chart id=(id) role="img" viewBox={ "0 0 " (width.max(SLOT_WIDTH)) " " (height) }
            aria-labelledby={ (title_id) " " (desc_id) } xmlns="http://www.w3.org/2000/svg" {
            title id=(title_id) { (title) }
            desc id=(desc_id) { (summary) }
            line x1="0" y1=(PLOT_HEIGHT) x2=(width) y2=(PLOT_HEIGHT) stroke="#98a2b3" stroke-width="0.5" {}
            @for (index, (bar, bar_height)) in bars.iter().zip(heights(bars)).enumerate() {
                @let x = SLOT_WIDTH * i64::try_from(index).unwrap_or(0);
                rect x=(x + (SLOT_WIDTH - BAR_WIDTH) / 2) y=(PLOT_HEIGHT - bar_height)
                    width=(BAR_WIDTH) height=(bar_height) fill="#2f6fde" data-period=(bar.period) {
                    title { (bar.period) ": " (bar.amount.to_string()) }
                }
                // Counted back from the last bar, which is always labelled
                // (today, this month), so labels never crowd at the end.
                @if (bars.len() - 1 - index).is_multiple_of(step) {
                    text x=(x + SLOT_WIDTH / 2) y=(PLOT_HEIGHT + LABEL_HEIGHT - 3)
                        font-size="7" text-anchor="middle" fill="#475467" { (bar.label) }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bar(fen: i64) -> Bar {
        Bar {
            period: "2026-12-01".to_owned(),
            label: "01".to_owned(),
            amount: Money::from_fen(fen),
        }
    }

    #[test]
    fn bars_scale_to_the_largest_and_a_small_amount_still_shows() {
        let bars = [bar(10_000), bar(5_000), bar(1), bar(0), bar(-300)];
        assert_eq!(heights(&bars), vec![100, 50, 1, 0, 0]);
        assert_eq!(heights(&[bar(0), bar(-1)]), vec![0, 0]);
        assert_eq!(heights(&[bar(i64::MAX), bar(i64::MAX / 2)]), vec![100, 49]);
    }

    #[test]
    fn the_chart_names_itself_and_each_bar_for_screen_readers() {
        let markup = bar_chart("days", "Earned", "30 days", &[bar(1234)], 7).into_string();
        assert!(
            markup.contains("<title id=\"days-title\">Earned</title>"),
            "{markup}"
        );
        assert!(
            markup.contains("<desc id=\"days-desc\">30 days</desc>"),
            "{markup}"
        );
        assert!(markup.contains("2026-12-01: 12.34"), "{markup}");
    }
}
