//! Lays out the one-page A4 certificate with `krilla`: a title, a two-column
//! table of every tax-cn.md §4 field (label │ value), and the filing note.
//! Text is drawn in the embedded Noto Sans SC, which krilla subsets to the
//! glyphs used and maps back to Unicode (ToUnicode), so the text can be
//! searched and copied.

use std::sync::OnceLock;

use chrono::{Datelike, FixedOffset, NaiveDate, Timelike};
use krilla::Document;
use krilla::SerializeSettings;
use krilla::geom::{PathBuilder, Point};
use krilla::metadata::{DateTime as PdfDateTime, Metadata};
use krilla::page::PageSettings;
use krilla::paint::{Fill, Stroke};
use krilla::surface::Surface;
use krilla::text::{Font, TextDirection};

use super::{CertificateData, CertificateError, CertificateFacts, validate};
use crate::domain::money::Money;
use crate::domain::tax::WithholdingMethod;

/// Noto Sans SC Regular (SIL OFL 1.1; `assets/fonts/NotoSansSC-OFL.txt`).
static FONT_BYTES: &[u8] = include_bytes!("../../assets/fonts/NotoSansSC-Regular.ttf");

/// A4 in PDF points (1/72 in).
const PAGE_WIDTH: f32 = 595.28;
const PAGE_HEIGHT: f32 = 841.89;
const MARGIN_X: f32 = 56.0;
const TITLE_BASELINE: f32 = 84.0;
const TITLE_SIZE: f32 = 18.0;
const TABLE_TOP: f32 = 124.0;
const ROW_HEIGHT: f32 = 22.0;
const LABEL_WIDTH: f32 = 176.0;
const CELL_PADDING: f32 = 8.0;
const TEXT_SIZE: f32 = 10.5;
const NOTE_SIZE: f32 = 9.5;
const NOTE_LEADING: f32 = 16.0;
/// Smallest size a long value is shrunk to so it stays in its cell; field
/// lengths are capped ([`super::MAX_FIELD_CHARS`]), so it is always enough.
const MIN_TEXT_SIZE: f32 = 5.0;
/// Beijing time, for the printed issue date: China has no daylight saving.
const BEIJING_OFFSET_SECONDS: i32 = 8 * 3600;

/// The certificate's title.
pub(crate) const TITLE: &str = "个人所得税扣缴凭证（扣缴信息告知）";
/// Heading of the filing note (申报说明).
const NOTE_HEADING: &str = "说明：";
/// The filing note, split where a line may break.
const NOTE_LINES: [&str; 3] = [
    "1. 本税款将于次月15日前向主管税务机关申报缴纳；",
    "2. 可在个人所得税APP（纳税记录/收入纳税明细查询）核对。",
    "3. 本凭证为扣缴义务人提供的扣缴信息告知，不作为完税证明；凭证编号与验证码可用于核验。",
];

/// The embedded font, parsed once per process.
fn font() -> Result<Font, CertificateError> {
    static FONT: OnceLock<Option<Font>> = OnceLock::new();
    FONT.get_or_init(|| Font::new(FONT_BYTES.into(), 0))
        .clone()
        .ok_or(CertificateError::Font)
}

/// Renders `data` as a one-page A4 PDF. The same data gives the same bytes.
pub fn render_pdf(data: &CertificateData) -> Result<Vec<u8>, CertificateError> {
    validate(data)?;
    let font = font()?;
    let code = CertificateFacts::of(data).code()?;

    let mut document = Document::new_with(SerializeSettings::default());
    document.set_metadata(metadata(data, &code));
    let page_settings = PageSettings::from_wh(PAGE_WIDTH, PAGE_HEIGHT)
        .ok_or_else(|| CertificateError::Render("bad page size".to_owned()))?;
    let mut page = document.start_page_with(page_settings);
    let mut surface = page.surface();

    let title_width = estimated_width(TITLE, TITLE_SIZE);
    draw_text(
        &mut surface,
        &font,
        (PAGE_WIDTH - title_width) / 2.0,
        TITLE_BASELINE,
        TITLE_SIZE,
        TITLE,
    );
    let unit = "金额单位：人民币元";
    draw_text(
        &mut surface,
        &font,
        PAGE_WIDTH - MARGIN_X - estimated_width(unit, NOTE_SIZE),
        TABLE_TOP - 8.0,
        NOTE_SIZE,
        unit,
    );

    let rows = rows(data, code);
    let table_bottom = draw_table(&mut surface, &font, &rows);

    let mut baseline = table_bottom + 24.0;
    draw_text(
        &mut surface,
        &font,
        MARGIN_X,
        baseline,
        NOTE_SIZE,
        NOTE_HEADING,
    );
    let note_x = MARGIN_X + estimated_width(NOTE_HEADING, NOTE_SIZE);
    for line in NOTE_LINES {
        draw_text(&mut surface, &font, note_x, baseline, NOTE_SIZE, line);
        baseline += NOTE_LEADING;
    }
    baseline += NOTE_LEADING;
    let signed_by = format!("扣缴义务人：{}", data.agent_name);
    draw_fitted(
        &mut surface,
        &font,
        MARGIN_X,
        baseline,
        PAGE_WIDTH - 2.0 * MARGIN_X,
        TEXT_SIZE,
        &signed_by,
    );
    let signature_note = format!("电子签名：随附文件 {}.json（Ed25519）", data.number);
    draw_text(
        &mut surface,
        &font,
        MARGIN_X,
        baseline + NOTE_LEADING,
        NOTE_SIZE,
        &signature_note,
    );

    surface.finish();
    page.finish();
    document
        .finish()
        .map_err(|error| CertificateError::Render(error.to_string()))
}

/// Title, keywords and dates from the data alone, so output is reproducible.
fn metadata(data: &CertificateData, code: &str) -> Metadata {
    let issued = data.issued_at.naive_utc();
    let created = PdfDateTime::new(u16::try_from(issued.year()).unwrap_or(0))
        .month(issued.month() as u8)
        .day(issued.day() as u8)
        .hour(issued.hour() as u8)
        .minute(issued.minute() as u8)
        .second(issued.second() as u8)
        .utc_offset_hour(0)
        .utc_offset_minute(0);
    Metadata::new()
        .title(format!("{TITLE} {}", data.number))
        .description(format!("{} {}", data.income_item, data.tax_period))
        .keywords(vec![data.number.clone(), code.to_owned()])
        .authors(vec![data.agent_name.clone()])
        .creator("fenrun".to_owned())
        .producer("fenrun".to_owned())
        .language("zh-CN".to_owned())
        .creation_date(created)
        .document_id(data.number.clone())
}

/// The table's rows, in print order: (label, value).
fn rows(data: &CertificateData, code: String) -> Vec<(&'static str, String)> {
    let w = &data.withholding;
    let cumulative = w.method == WithholdingMethod::Cumulative;
    let mut rows = vec![("凭证编号", data.number.clone())];
    if let Some(original) = &data.references {
        rows.push(("更正的原凭证编号", original.clone()));
        // A correction stating no income is the void of a returned payout.
        if data.withholding.gross.is_zero() {
            rows.push((
                "更正说明",
                "原凭证作废：该笔支付已被退回（退票），本次收入、扣缴税额与实付金额均为零"
                    .to_owned(),
            ));
        }
    }
    rows.extend([
        ("扣缴义务人名称", data.agent_name.clone()),
        ("扣缴义务人纳税人识别号", data.agent_tin.clone()),
        ("纳税人姓名", data.distributor_name.clone()),
        ("身份证件类型", "居民身份证".to_owned()),
        ("身份证件号码", data.masked_id_number.clone()),
        ("所得项目", data.income_item.clone()),
        ("税款所属期", data.tax_period.clone()),
        ("本次收入", amount(w.gross)),
    ]);
    if cumulative {
        rows.extend([
            ("累计收入", amount(w.income_to_date)),
            ("累计费用", amount(w.fee)),
            ("累计减除费用", amount(w.basic_deduction)),
            ("累计应纳税所得额", amount(w.taxable)),
        ]);
    } else {
        rows.extend([
            ("本月累计收入", amount(w.income_to_date)),
            ("费用", amount(w.fee)),
            ("应纳税所得额", amount(w.taxable)),
        ]);
    }
    rows.extend([
        ("预扣率", w.rate.to_string()),
        ("速算扣除数", amount(w.quick_deduction)),
        (
            if cumulative {
                "累计应纳税额"
            } else {
                "应纳税额"
            },
            amount(w.tax_to_date),
        ),
        ("已扣缴税额", amount(w.withheld_before)),
        ("本次扣缴税额", amount(w.withheld_now)),
        ("实付金额", amount(data.net_paid)),
        ("扣缴日期", chinese_date(data.payment_date)),
        (
            "开具日期",
            chinese_date(data.issued_at.with_timezone(&beijing()).date_naive()),
        ),
        ("验证码", code),
    ]);
    rows
}

/// Draws the grid and the rows; returns the y of the table's bottom edge.
fn draw_table(surface: &mut Surface<'_>, font: &Font, rows: &[(&'static str, String)]) -> f32 {
    let left = MARGIN_X;
    let right = PAGE_WIDTH - MARGIN_X;
    let divider = left + LABEL_WIDTH;
    let bottom = TABLE_TOP + ROW_HEIGHT * rows.len() as f32;

    let mut grid = PathBuilder::new();
    for index in 0..=rows.len() {
        let y = TABLE_TOP + ROW_HEIGHT * index as f32;
        grid.move_to(left, y);
        grid.line_to(right, y);
    }
    for x in [left, divider, right] {
        grid.move_to(x, TABLE_TOP);
        grid.line_to(x, bottom);
    }
    if let Some(path) = grid.finish() {
        surface.set_fill(None);
        surface.set_stroke(Some(Stroke {
            width: 0.6,
            ..Stroke::default()
        }));
        surface.draw_path(&path);
        surface.set_stroke(None);
        surface.set_fill(Some(Fill::default()));
    }

    let value_width = right - divider - 2.0 * CELL_PADDING;
    for (index, (label, value)) in rows.iter().enumerate() {
        // Baseline a third of the way up from the row's bottom edge.
        let baseline = TABLE_TOP + ROW_HEIGHT * (index as f32 + 1.0) - ROW_HEIGHT / 3.0;
        draw_text(
            surface,
            font,
            left + CELL_PADDING,
            baseline,
            TEXT_SIZE,
            label,
        );
        draw_fitted(
            surface,
            font,
            divider + CELL_PADDING,
            baseline,
            value_width,
            TEXT_SIZE,
            value,
        );
    }
    bottom
}

fn draw_text(surface: &mut Surface<'_>, font: &Font, x: f32, baseline: f32, size: f32, text: &str) {
    surface.draw_text(
        Point::from_xy(x, baseline),
        font.clone(),
        size,
        text,
        false,
        TextDirection::LeftToRight,
    );
}

/// Draws `text` at `size`, or smaller if it would not fit in `width`.
fn draw_fitted(
    surface: &mut Surface<'_>,
    font: &Font,
    x: f32,
    baseline: f32,
    width: f32,
    size: f32,
    text: &str,
) {
    let natural = estimated_width(text, size);
    let size = if natural > width {
        (size * width / natural).max(MIN_TEXT_SIZE)
    } else {
        size
    };
    draw_text(surface, font, x, baseline, size, text);
}

/// The width of `text`, estimated without shaping: CJK glyphs are one em
/// wide in Noto Sans SC, digits and most Latin letters at most 0.6 em, so
/// the estimate errs wide for the ids, dates and amounts printed here.
fn estimated_width(text: &str, size: f32) -> f32 {
    text.chars()
        .map(|c| if c.is_ascii() { 0.6 } else { 1.0 })
        .sum::<f32>()
        * size
}

/// An amount with two decimals, as printed: `3000.00`.
fn amount(money: Money) -> String {
    money.to_string()
}

/// `2026年3月31日`.
fn chinese_date(date: NaiveDate) -> String {
    format!("{}年{}月{}日", date.year(), date.month(), date.day())
}

fn beijing() -> FixedOffset {
    FixedOffset::east_opt(BEIJING_OFFSET_SECONDS).expect("UTC+8 is a valid offset")
}
