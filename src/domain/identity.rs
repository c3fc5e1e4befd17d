//! Personal data a payout needs: who the distributor is and where the money
//! goes. Parsed once at the edge into newtypes that wrap
//! [`secrecy::SecretString`], so nothing past the edge holds a raw `String`
//! and `Debug` prints `IdNumber([REDACTED])`, never the value.
//!
//! Each type offers exactly two views of its value:
//! - `masked()` — what logs, errors, API answers and the ops console may show
//!   (`110***********1234`, `6222 **** **** 1234`, `张**`, `138****5678`);
//! - `expose_secret()` — the full value, for the one line that encrypts it
//!   (see `crate::vault`) or sends it to a gateway. It is
//!   [`secrecy::ExposeSecret`]'s method, so reading a value takes that
//!   trait's import, which stands out in review.
//!
//! Errors ([`IdentityError`]) name the field and the rule broken, never the
//! value.

use std::fmt;

use chrono::{Datelike, NaiveDate};
use secrecy::{ExposeSecret, SecretString};

use crate::domain::UnknownName;

/// Why a piece of personal data was refused. Messages never contain the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("an ID number is 17 digits followed by a digit or X")]
    IdNumberFormat,
    #[error("the ID number's check character does not match its digits")]
    IdNumberCheckDigit,
    #[error("the ID number's birth date is not a real date between 1900-01-01 and today")]
    IdNumberBirthDate,
    #[error("a real name is 1–{MAX_REAL_NAME_CHARS} characters without control characters")]
    RealName,
    #[error("a real name {0}")]
    RealNameUnsafe(UnsafeText),
    #[error("a bank card number is {MIN_CARD_DIGITS}–{MAX_CARD_DIGITS} digits")]
    BankCardFormat,
    #[error("the bank card number's check digit does not match (Luhn)")]
    BankCardChecksum,
    #[error("an Alipay account is an email address or an 11-digit mainland mobile number")]
    AlipayAccount,
    #[error("a WeChat openid is 1–{MAX_OPENID_CHARS} letters, digits, '-' or '_'")]
    WechatOpenId,
}

impl IdentityError {
    /// The request field this error is about, for `{"error": {"field": …}}`.
    pub fn field(self) -> &'static str {
        match self {
            IdentityError::IdNumberFormat
            | IdentityError::IdNumberCheckDigit
            | IdentityError::IdNumberBirthDate => "id_number",
            IdentityError::RealName | IdentityError::RealNameUnsafe(_) => "real_name",
            IdentityError::BankCardFormat | IdentityError::BankCardChecksum => "bank_card_number",
            IdentityError::AlipayAccount => "alipay_account",
            IdentityError::WechatOpenId => "wechat_openid",
        }
    }
}

/// Longest real name accepted, in characters (not bytes). Chinese names are
/// 2–4 characters; transliterated minority and foreign names (`买买提·艾力`,
/// `JOHN SMITH`) are longer but well inside this.
pub const MAX_REAL_NAME_CHARS: usize = 50;
/// Shortest bank card number (PAN) accepted, in digits.
pub const MIN_CARD_DIGITS: usize = 12;
/// Longest bank card number (PAN) accepted, in digits (ISO/IEC 7812).
pub const MAX_CARD_DIGITS: usize = 19;
/// Longest WeChat openid accepted; real ones are 28 characters.
pub const MAX_OPENID_CHARS: usize = 128;
/// Longest email address accepted as an Alipay account (RFC 5321 path limit).
pub const MAX_EMAIL_CHARS: usize = 254;
/// Earliest birth year accepted in an ID number: no one born before it holds
/// an 18-digit number, and a year such as 0001 is a typo, not a person.
const EARLIEST_BIRTH_YEAR: i32 = 1900;

/// Why a name that people read (a real name, a distributor's display name)
/// was refused. Such names end up in CSV and XLSX declarations, PDFs, HTML
/// pages and logs; each rule closes one way a hostile name could make one of
/// those show or do something else than the name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UnsafeText {
    /// A spreadsheet reads a cell starting with one of these as a formula
    /// (OWASP "CSV injection"); tab and carriage return are the variants
    /// some spreadsheets strip before looking.
    #[error("must not start with '=', '+', '-', '@', a tab or a carriage return")]
    FormulaLead,
    /// Bidi controls reorder what is displayed around them, so a name can
    /// show as something other than what is stored (Trojan Source, CVE-2021-42574).
    #[error("must not contain direction-changing (bidi) control characters")]
    Bidi,
    /// Invisible characters make two different names look the same.
    #[error("must not contain zero-width characters")]
    ZeroWidth,
    #[error("must not contain control characters")]
    Control,
}

/// Characters a spreadsheet may take as the start of a formula (OWASP CSV
/// injection).
const FORMULA_LEADS: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// Whether a spreadsheet could read `text` as a formula: it starts with one
/// of [`FORMULA_LEADS`]. The declaration's CSV writer neutralises such cells.
pub fn starts_like_formula(text: &str) -> bool {
    text.starts_with(FORMULA_LEADS)
}

/// Whether `c` changes the direction text is displayed in: the embeddings
/// and overrides U+202A–U+202E, the isolates U+2066–U+2069, and the marks
/// LRM, RLM and ALM.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}')
}

/// Whether `c` is a zero-width space, joiner or non-joiner, the word joiner,
/// or the byte-order mark (a zero-width no-break space inside text).
fn is_zero_width(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200D}' | '\u{2060}' | '\u{FEFF}')
}

/// Checks a name people will read for what would make it unsafe to show or
/// to put in a spreadsheet (see [`UnsafeText`]). The caller trims first.
pub fn check_readable_name(text: &str) -> Result<(), UnsafeText> {
    if starts_like_formula(text) {
        return Err(UnsafeText::FormulaLead);
    }
    for c in text.chars() {
        if is_bidi_control(c) {
            return Err(UnsafeText::Bidi);
        }
        if is_zero_width(c) {
            return Err(UnsafeText::ZeroWidth);
        }
        if c.is_control() {
            return Err(UnsafeText::Control);
        }
    }
    Ok(())
}

/// Defines a newtype over `SecretString` with a private field, an
/// `ExposeSecret<str>` impl and a `Debug` that never shows the value.
macro_rules! secret_newtype {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone)]
        pub struct $name(SecretString);

        /// The full value, through the same trait as every other secret (so
        /// `Vault::seal` takes these types directly). Call it only on the
        /// line that encrypts the value or hands it to a gateway; show
        /// `masked()` everywhere else.
        impl ExposeSecret<str> for $name {
            fn expose_secret(&self) -> &str {
                self.0.expose_secret()
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($name), "([REDACTED])"))
            }
        }
    };
}

secret_newtype!(
    /// An 18-character PRC resident identity number (居民身份证号码,
    /// GB 11643-1999): a 6-digit region code, the birth date `YYYYMMDD`, a
    /// 3-digit sequence number and an ISO 7064 MOD 11-2 check character
    /// (`0`–`9` or `X`, always stored upper-case).
    IdNumber
);

/// Weights of the 17 leading digits in the ISO 7064 MOD 11-2 check.
const ID_WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
/// Check character for each remainder 0..=10 of the weighted sum mod 11.
const ID_CHECK_CHARS: [u8; 11] = *b"10X98765432";

/// The ISO 7064 MOD 11-2 check character of 17 ASCII digits.
fn check_character(first17: &[u8]) -> u8 {
    let sum: u32 = first17
        .iter()
        .zip(ID_WEIGHTS)
        .map(|(digit, weight)| u32::from(digit - b'0') * weight)
        .sum();
    ID_CHECK_CHARS[(sum % 11) as usize]
}

impl IdNumber {
    /// `first17` (17 ASCII digits) with its check character appended: for
    /// demos, benchmarks and tests that need valid numbers.
    ///
    /// # Panics
    /// If `first17` is not 17 ASCII digits.
    pub fn complete(first17: &str) -> String {
        assert!(
            first17.len() == 17 && first17.bytes().all(|b| b.is_ascii_digit()),
            "17 digits expected"
        );
        format!(
            "{first17}{}",
            char::from(check_character(first17.as_bytes()))
        )
    }

    /// Parses an ID number; a lower-case `x` check character is accepted and
    /// stored as `X`. The birth date must be real, not before 1900-01-01 and
    /// not after `today` (the caller's clock: time is passed in).
    pub fn parse(text: &str, today: NaiveDate) -> Result<IdNumber, IdentityError> {
        let bytes = text.as_bytes();
        let well_formed = bytes.len() == 18
            && bytes[..17].iter().all(u8::is_ascii_digit)
            && (bytes[17].is_ascii_digit() || bytes[17] == b'X' || bytes[17] == b'x');
        if !well_formed {
            return Err(IdentityError::IdNumberFormat);
        }
        let expected = check_character(&bytes[..17]);
        if bytes[17].to_ascii_uppercase() != expected {
            return Err(IdentityError::IdNumberCheckDigit);
        }
        // Four digits always fit an i32.
        let year = decimal(&bytes[6..10]) as i32;
        match NaiveDate::from_ymd_opt(year, decimal(&bytes[10..12]), decimal(&bytes[12..14])) {
            Some(birth) if year >= EARLIEST_BIRTH_YEAR && birth <= today => {}
            _ => return Err(IdentityError::IdNumberBirthDate),
        }
        let mut normalised = String::with_capacity(18);
        normalised.push_str(&text[..17]);
        normalised.push(char::from(expected));
        Ok(IdNumber(SecretString::from(normalised)))
    }

    /// The first 3 and last 4 characters with 11 stars between:
    /// `110***********1234` (always 18 characters).
    pub fn masked(&self) -> String {
        let value = self.expose_secret();
        format!("{}***********{}", &value[..3], &value[14..])
    }

    /// Whole years lived on `today` (the birthday itself counts), for
    /// age rules that must not see the rest of the number.
    pub fn age_on(&self, today: NaiveDate) -> i32 {
        let digits = self.expose_secret().as_bytes();
        // Four digits always fit an i32.
        let years = today.year() - decimal(&digits[6..10]) as i32;
        if (today.month(), today.day()) >= (decimal(&digits[10..12]), decimal(&digits[12..14])) {
            years
        } else {
            years - 1
        }
    }
}

/// The value of a run of ASCII digits (at most 4 here, so no overflow).
fn decimal(digits: &[u8]) -> u32 {
    digits
        .iter()
        .fold(0, |acc, digit| acc * 10 + u32::from(digit - b'0'))
}

secret_newtype!(
    /// A person's legal name (真实姓名) as on their ID card, as gateways
    /// check it against the account holder: 1–50 characters, no control
    /// characters, surrounding whitespace removed.
    RealName
);

impl RealName {
    pub fn parse(text: &str) -> Result<RealName, IdentityError> {
        let name = text.trim();
        let chars = name.chars().count();
        if chars == 0 || chars > MAX_REAL_NAME_CHARS || name.chars().any(char::is_control) {
            return Err(IdentityError::RealName);
        }
        check_readable_name(name).map_err(IdentityError::RealNameUnsafe)?;
        Ok(RealName(SecretString::from(name)))
    }

    /// The first character and one `*` for every other character: `张**`.
    /// A one-character name masks to `*`, since its first character is all
    /// of it.
    pub fn masked(&self) -> String {
        let mut chars = self.expose_secret().chars();
        let first = chars.next().expect("a RealName is never empty");
        let rest = chars.count();
        if rest == 0 {
            return "*".to_owned();
        }
        let mut masked = String::with_capacity(first.len_utf8() + rest);
        masked.push(first);
        masked.extend(std::iter::repeat_n('*', rest));
        masked
    }
}

secret_newtype!(
    /// A bank card number (PAN, 银行卡号): 12–19 digits whose last digit is
    /// the Luhn check digit. Spaces and `-` typed between digit groups are
    /// removed when parsing; only the digits are kept.
    BankCardNumber
);

impl BankCardNumber {
    /// `leading` (11–18 ASCII digits) with its Luhn check digit appended:
    /// for demos, benchmarks and tests that need many valid numbers.
    ///
    /// # Panics
    /// If `leading` is not 11–18 ASCII digits.
    pub fn complete(leading: &str) -> String {
        assert!(
            (MIN_CARD_DIGITS - 1..MAX_CARD_DIGITS).contains(&leading.len())
                && leading.bytes().all(|b| b.is_ascii_digit()),
            "11 to 18 digits expected"
        );
        (0..=9u8)
            .map(|digit| format!("{leading}{digit}"))
            .find(|number| luhn_valid(number))
            .expect("one of ten check digits always fits")
    }

    pub fn parse(text: &str) -> Result<BankCardNumber, IdentityError> {
        let mut digits = String::with_capacity(MAX_CARD_DIGITS);
        for c in text.chars() {
            match c {
                '0'..='9' if digits.len() < MAX_CARD_DIGITS => digits.push(c),
                ' ' | '-' => {}
                _ => return Err(IdentityError::BankCardFormat),
            }
        }
        if digits.len() < MIN_CARD_DIGITS {
            return Err(IdentityError::BankCardFormat);
        }
        if !luhn_valid(&digits) {
            return Err(IdentityError::BankCardChecksum);
        }
        Ok(BankCardNumber(SecretString::from(digits)))
    }

    /// Always `DDDD **** **** DDDD`: the first four digits (the issuer, which
    /// tells a person which bank), two groups of four stars, the last four
    /// digits, separated by single spaces — 19 characters whatever the
    /// card's length, so the mask does not reveal how many digits are hidden.
    pub fn masked(&self) -> String {
        let digits = self.expose_secret();
        format!("{} **** **** {}", &digits[..4], &digits[digits.len() - 4..])
    }

    /// The last four digits, which people use to tell their cards apart.
    pub fn last_four(&self) -> &str {
        let digits = self.expose_secret();
        &digits[digits.len() - 4..]
    }
}

/// The Luhn (mod 10) check over a string of ASCII digits.
fn luhn_valid(digits: &str) -> bool {
    luhn_sum(digits, 1).is_multiple_of(10)
}

/// The Luhn sum of ASCII `digits`, doubling those whose position from the
/// right (0 for the last) has the parity `doubled`: 1 over a whole number,
/// 0 over a number still without its check digit.
fn luhn_sum(digits: &str, doubled: usize) -> u32 {
    digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(position, digit)| {
            let value = u32::from(digit - b'0');
            if position % 2 == doubled {
                let twice = value * 2;
                if twice > 9 { twice - 9 } else { twice }
            } else {
                value
            }
        })
        .sum()
}

/// Which kind of login an [`AlipayAccount`] is; Alipay accepts either as the
/// payee's logon id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlipayAccountKind {
    Mobile,
    Email,
}

secret_newtype!(
    /// An Alipay logon id (支付宝账号): an 11-digit mainland mobile number
    /// (`1[3-9]` then 9 digits) or an email address. Surrounding whitespace
    /// is removed; nothing else is changed.
    AlipayAccount
);

impl AlipayAccount {
    pub fn parse(text: &str) -> Result<AlipayAccount, IdentityError> {
        let account = text.trim();
        if is_mainland_mobile(account) || is_email(account) {
            Ok(AlipayAccount(SecretString::from(account)))
        } else {
            Err(IdentityError::AlipayAccount)
        }
    }

    pub fn kind(&self) -> AlipayAccountKind {
        if self.expose_secret().contains('@') {
            AlipayAccountKind::Email
        } else {
            AlipayAccountKind::Mobile
        }
    }

    /// A mobile number keeps its first 3 and last 4 digits (`138****5678`);
    /// an email keeps the first character of the local part and the domain
    /// (`a***@example.com`). The star count is fixed, so lengths stay hidden.
    pub fn masked(&self) -> String {
        let account = self.expose_secret();
        match account.split_once('@') {
            Some((local, domain)) => {
                let first = local
                    .chars()
                    .next()
                    .expect("an email local part is never empty");
                format!("{first}***@{domain}")
            }
            None => format!("{}****{}", &account[..3], &account[7..]),
        }
    }
}

fn is_mainland_mobile(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() == 11
        && bytes.iter().all(u8::is_ascii_digit)
        && bytes[0] == b'1'
        && (b'3'..=b'9').contains(&bytes[1])
}

/// A deliberately plain email check: one `@`, a non-empty local part, a
/// domain of at least two non-empty dot-separated labels, no whitespace or
/// control characters. Alipay itself decides whether the account exists.
fn is_email(text: &str) -> bool {
    if text.chars().count() > MAX_EMAIL_CHARS
        || text.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return false;
    }
    let Some((local, domain)) = text.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && domain.split('.').all(|label| !label.is_empty())
}

secret_newtype!(
    /// A WeChat Pay openid (the payee's id within one merchant app id):
    /// 1–128 ASCII letters, digits, `-` or `_`.
    WechatOpenId
);

impl WechatOpenId {
    pub fn parse(text: &str) -> Result<WechatOpenId, IdentityError> {
        let allowed = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
        if text.is_empty() || text.len() > MAX_OPENID_CHARS || !text.chars().all(allowed) {
            return Err(IdentityError::WechatOpenId);
        }
        Ok(WechatOpenId(SecretString::from(text)))
    }

    /// The first 4 and last 4 characters around `***` (`oUpF***Ddw4`). An
    /// openid shorter than 12 characters masks to `***` alone, so that at
    /// least four characters are always hidden.
    pub fn masked(&self) -> String {
        let id = self.expose_secret();
        if id.len() < 12 {
            return "***".to_owned();
        }
        format!("{}***{}", &id[..4], &id[id.len() - 4..])
    }
}

/// How a payout account is paid.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum PayoutChannel {
    /// WeChat Pay transfer to an openid.
    Wechat,
    /// Alipay transfer to a logon id.
    Alipay,
    /// Bank transfer to a card.
    Bank,
}

impl PayoutChannel {
    pub const ALL: [PayoutChannel; 3] = [
        PayoutChannel::Wechat,
        PayoutChannel::Alipay,
        PayoutChannel::Bank,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PayoutChannel::Wechat => "wechat",
            PayoutChannel::Alipay => "alipay",
            PayoutChannel::Bank => "bank",
        }
    }

    pub fn parse(text: &str) -> Result<PayoutChannel, UnknownName> {
        match text {
            "wechat" => Ok(PayoutChannel::Wechat),
            "alipay" => Ok(PayoutChannel::Alipay),
            "bank" => Ok(PayoutChannel::Bank),
            other => Err(UnknownName(format!("payout channel {other:?}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    fn today() -> NaiveDate {
        day(2025, 6, 15)
    }

    #[test]
    fn valid_id_numbers_are_accepted() {
        for id in [
            "11010519491231002X",
            "110101199003070011",
            "440308198001010012",
            "310104200002290014",
        ] {
            let parsed = IdNumber::parse(id, today()).unwrap();
            assert_eq!(parsed.expose_secret(), id);
        }
    }

    #[test]
    fn a_lower_case_x_check_character_is_stored_upper_case() {
        let parsed = IdNumber::parse("11010519491231002x", today()).unwrap();
        assert_eq!(parsed.expose_secret(), "11010519491231002X");
    }

    #[test]
    fn a_wrong_check_digit_is_refused_as_such() {
        assert_eq!(
            IdNumber::parse("110105194912310021", today()).unwrap_err(),
            IdentityError::IdNumberCheckDigit
        );
        assert_eq!(
            IdNumber::parse("110101199003070012", today()).unwrap_err(),
            IdentityError::IdNumberCheckDigit
        );
    }

    #[test]
    fn wrong_lengths_and_characters_are_format_errors() {
        for bad in [
            "",
            "11010519491231002",
            "11010519491231002X0",
            "1101051949123100X2",
            "11010519491231002Y",
            "１１0105194912310021",
            " 11010519491231002X",
        ] {
            assert_eq!(
                IdNumber::parse(bad, today()).unwrap_err(),
                IdentityError::IdNumberFormat,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_birth_date_in_the_future_is_refused() {
        // 2030-01-01, with a correct check digit.
        let id = with_check_digit("11010120300101001");
        assert_eq!(
            IdNumber::parse(&id, today()).unwrap_err(),
            IdentityError::IdNumberBirthDate
        );
        // Born today is fine; born tomorrow is not.
        let born_today = with_check_digit("11010120250615001");
        assert!(IdNumber::parse(&born_today, today()).is_ok());
        let born_tomorrow = with_check_digit("11010120250616001");
        assert_eq!(
            IdNumber::parse(&born_tomorrow, today()).unwrap_err(),
            IdentityError::IdNumberBirthDate
        );
    }

    #[test]
    fn february_the_thirtieth_is_not_a_birth_date() {
        let id = with_check_digit("11010119900230001");
        assert_eq!(
            IdNumber::parse(&id, today()).unwrap_err(),
            IdentityError::IdNumberBirthDate
        );
        let not_leap = with_check_digit("11010119010229001");
        assert_eq!(
            IdNumber::parse(&not_leap, today()).unwrap_err(),
            IdentityError::IdNumberBirthDate
        );
        let before_1900 = with_check_digit("11010118991231001");
        assert_eq!(
            IdNumber::parse(&before_1900, today()).unwrap_err(),
            IdentityError::IdNumberBirthDate
        );
    }

    /// Appends the right check character, written independently of the
    /// parser from the standard's definition: the check character c makes
    /// Σ(digit_i · 2^(18-i) mod 11) + c ≡ 1 (mod 11), with X standing for 10.
    fn with_check_digit(first17: &str) -> String {
        let sum: u64 = first17
            .bytes()
            .enumerate()
            .map(|(i, d)| u64::from(d - b'0') * (1u64 << (17 - i)) % 11)
            .sum();
        let check = (12 - sum % 11) % 11;
        let c = if check == 10 {
            'X'
        } else {
            char::from(b'0' + check as u8)
        };
        format!("{first17}{c}")
    }

    #[test]
    fn the_independent_check_digit_helper_agrees_with_known_numbers() {
        assert_eq!(with_check_digit("11010519491231002"), "11010519491231002X");
        assert_eq!(with_check_digit("11010119900307001"), "110101199003070011");
    }

    #[test]
    fn an_id_number_masks_to_three_stars_eleven_and_four() {
        let id = IdNumber::parse("110101199003070011", today()).unwrap();
        assert_eq!(id.masked(), "110***********0011");
        assert_eq!(id.masked().chars().count(), 18);
    }

    #[test]
    fn age_counts_whole_years_from_the_birth_date() {
        let id = IdNumber::parse("110101199003070011", today()).unwrap();
        assert_eq!(id.age_on(day(2025, 3, 6)), 34);
        assert_eq!(id.age_on(day(2025, 3, 7)), 35);
    }

    #[test]
    fn real_names_are_trimmed_checked_and_masked_per_character() {
        let name = RealName::parse(" 张三丰 ").unwrap();
        assert_eq!(name.expose_secret(), "张三丰");
        assert_eq!(name.masked(), "张**");
        assert_eq!(RealName::parse("买买提·艾力").unwrap().masked(), "买*****");
        assert_eq!(RealName::parse("李").unwrap().masked(), "*");
        assert_eq!(RealName::parse("   ").unwrap_err(), IdentityError::RealName);
        assert_eq!(
            RealName::parse("张\n三").unwrap_err(),
            IdentityError::RealName
        );
        assert!(RealName::parse(&"张".repeat(50)).is_ok());
        assert_eq!(
            RealName::parse(&"张".repeat(51)).unwrap_err(),
            IdentityError::RealName
        );
    }

    #[test]
    fn real_names_that_a_spreadsheet_would_run_or_a_screen_would_reorder_are_refused() {
        for (bad, why) in [
            ("=HYPERLINK(\"http://x\",\"张三\")", UnsafeText::FormulaLead),
            ("+86张三", UnsafeText::FormulaLead),
            ("-张三", UnsafeText::FormulaLead),
            ("@SUM(A1)", UnsafeText::FormulaLead),
            ("张\u{202E}三", UnsafeText::Bidi),
            ("张三\u{2066}", UnsafeText::Bidi),
            ("\u{200F}张三", UnsafeText::Bidi),
            ("张\u{061C}三", UnsafeText::Bidi),
            ("张\u{200B}三", UnsafeText::ZeroWidth),
            ("张\u{200D}三", UnsafeText::ZeroWidth),
            ("张\u{2060}三", UnsafeText::ZeroWidth),
            ("张\u{FEFF}三", UnsafeText::ZeroWidth),
        ] {
            assert_eq!(
                RealName::parse(bad).unwrap_err(),
                IdentityError::RealNameUnsafe(why),
                "{bad:?}"
            );
            assert_eq!(IdentityError::RealNameUnsafe(why).field(), "real_name");
        }
        // Surrounding whitespace is trimmed before the rules look, so a
        // leading tab cannot hide a formula; an inner one is a control character.
        assert_eq!(
            RealName::parse("\t=1+1").unwrap_err(),
            IdentityError::RealNameUnsafe(UnsafeText::FormulaLead)
        );
        assert_eq!(
            RealName::parse("张\t三").unwrap_err(),
            IdentityError::RealName
        );
        // The characters are fine anywhere but first, and ordinary names pass.
        for ok in ["张-三", "a=b", "买买提·艾力", "JOHN SMITH", "O'Brien"] {
            assert!(RealName::parse(ok).is_ok(), "{ok:?}");
        }
    }

    #[test]
    fn the_readable_name_check_names_each_rule() {
        assert_eq!(check_readable_name("小明"), Ok(()));
        assert_eq!(check_readable_name("\t小明"), Err(UnsafeText::FormulaLead));
        assert_eq!(check_readable_name("\r小明"), Err(UnsafeText::FormulaLead));
        assert_eq!(check_readable_name("小\u{7}明"), Err(UnsafeText::Control));
        assert_eq!(check_readable_name("小\u{85}明"), Err(UnsafeText::Control));
        assert_eq!(check_readable_name("小\u{202A}明"), Err(UnsafeText::Bidi));
        assert_eq!(
            check_readable_name("小\u{200C}明"),
            Err(UnsafeText::ZeroWidth)
        );
    }

    #[test]
    fn cards_that_pass_luhn_are_accepted_with_separators_removed() {
        let card = BankCardNumber::parse("6222 0212 3456 7894").unwrap();
        assert_eq!(card.expose_secret(), "6222021234567894");
        assert!(BankCardNumber::parse("4111-1111-1111-1111").is_ok());
        // A 19-digit and a 12-digit number with correct check digits.
        assert!(BankCardNumber::parse("6212262502009182455").is_ok());
        assert!(BankCardNumber::parse("123456789015").is_ok());
    }

    #[test]
    fn a_completed_card_number_passes_its_check() {
        assert_eq!(
            BankCardNumber::complete("622202123456789"),
            "6222021234567894"
        );
        for serial in 0..200 {
            let number = BankCardNumber::complete(&format!("622588{serial:09}"));
            assert_eq!(number.len(), 16);
            assert!(BankCardNumber::parse(&number).is_ok(), "{number}");
        }
        assert_eq!(
            BankCardNumber::complete("621226250200918245"),
            "6212262502009182455"
        );
        assert_eq!(BankCardNumber::complete("12345678901"), "123456789015");
        for number in 0..100 {
            let card = BankCardNumber::complete(&format!("62220212{number:07}"));
            assert!(BankCardNumber::parse(&card).is_ok(), "{card}");
        }
    }

    #[test]
    fn cards_that_fail_luhn_are_refused_as_such() {
        assert_eq!(
            BankCardNumber::parse("6222021234567890").unwrap_err(),
            IdentityError::BankCardChecksum
        );
        assert_eq!(
            BankCardNumber::parse("4111111111111112").unwrap_err(),
            IdentityError::BankCardChecksum
        );
    }

    #[test]
    fn cards_of_the_wrong_length_or_with_letters_are_format_errors() {
        for bad in [
            "",
            "12345678903",
            "62220212345678912345",
            "6222 0212 3456 789a",
            "6222_0212_3456_7894",
        ] {
            assert_eq!(
                BankCardNumber::parse(bad).unwrap_err(),
                IdentityError::BankCardFormat,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_card_masks_to_four_digits_eight_stars_and_four_digits_whatever_its_length() {
        let card = BankCardNumber::parse("6222021234567894").unwrap();
        assert_eq!(card.masked(), "6222 **** **** 7894");
        assert_eq!(card.last_four(), "7894");
        let long = BankCardNumber::parse("6212262502009182455").unwrap();
        assert_eq!(long.masked(), "6212 **** **** 2455");
        let short = BankCardNumber::parse("123456789015").unwrap();
        assert_eq!(short.masked(), "1234 **** **** 9015");
    }

    #[test]
    fn alipay_accounts_are_mobiles_or_emails_and_mask_accordingly() {
        let mobile = AlipayAccount::parse("13812345678").unwrap();
        assert_eq!(mobile.kind(), AlipayAccountKind::Mobile);
        assert_eq!(mobile.masked(), "138****5678");
        let email = AlipayAccount::parse(" alice@example.com ").unwrap();
        assert_eq!(email.kind(), AlipayAccountKind::Email);
        assert_eq!(email.expose_secret(), "alice@example.com");
        assert_eq!(email.masked(), "a***@example.com");
        for bad in [
            "",
            "1381234567",
            "138123456789",
            "12812345678",
            "alice",
            "alice@",
            "@example.com",
            "alice@example",
            "alice@example..com",
            "a b@example.com",
            "a@b@example.com",
        ] {
            assert_eq!(
                AlipayAccount::parse(bad).unwrap_err(),
                IdentityError::AlipayAccount,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn wechat_openids_are_checked_and_masked_to_first_and_last_four() {
        let id = WechatOpenId::parse("oUpF8uMuAJO_M2pxb1Q9zNjWeS6o").unwrap();
        assert_eq!(id.masked(), "oUpF***eS6o");
        assert_eq!(WechatOpenId::parse("short_id").unwrap().masked(), "***");
        assert!(WechatOpenId::parse(&"a".repeat(128)).is_ok());
        for bad in ["", "has space", "semi;colon", &"a".repeat(129)] {
            assert_eq!(
                WechatOpenId::parse(bad).unwrap_err(),
                IdentityError::WechatOpenId
            );
        }
    }

    #[test]
    fn debug_output_never_contains_the_value() {
        let id = IdNumber::parse("110101199003070011", today()).unwrap();
        let name = RealName::parse("张三").unwrap();
        let card = BankCardNumber::parse("6222021234567894").unwrap();
        let alipay = AlipayAccount::parse("13812345678").unwrap();
        let openid = WechatOpenId::parse("oUpF8uMuAJO_M2pxb1Q9zNjWeS6o").unwrap();
        let printed = format!("{id:?} {name:?} {card:?} {alipay:?} {openid:?}");
        for secret in [
            "1990", "0011", "张", "6222", "7894", "1381", "5678", "oUpF", "eS6o",
        ] {
            assert!(!printed.contains(secret), "{printed} shows {secret}");
        }
        assert_eq!(format!("{id:?}"), "IdNumber([REDACTED])");
    }

    #[test]
    fn errors_name_the_field_and_never_the_value() {
        let error = BankCardNumber::parse("6222021234567890").unwrap_err();
        assert_eq!(error.field(), "bank_card_number");
        assert!(!error.to_string().contains("6222"));
        let error = IdNumber::parse("110105194912310021", today()).unwrap_err();
        assert_eq!(error.field(), "id_number");
        assert!(!error.to_string().contains("1101"));
    }
}
