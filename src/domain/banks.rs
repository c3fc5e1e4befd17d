//! The banks a bank-card payout can go to, and what a bank payout account
//! says beyond its card number (SPEC §2.5, §2.7; gateways.md "Bank cards").
//!
//! Cards are paid through Alipay's 转账到银行卡 (`TRANS_BANKCARD_NO_PWD`),
//! whose `payee_info.bankcard_ext_info` names the account's type: personal
//! (对私, `account_type` "2") or a company's (对公, "1"). The bank finds a
//! company account by its branch, so a company account also carries the
//! bank's name (`inst_name`) and either the branch's 联行号 (`bank_code`) or
//! its province, city and name.
//!
//! [`BANKS`] is the whole list of banks we pay to: a card of any other bank
//! is refused when the account is added, not when the money is sent. A bank
//! is named by its Chinese name, full (`中国工商银行`) or short (`工商银行`),
//! or by its code (`ICBC`, any case); the full name is what is stored and
//! sent.

use crate::domain::UnknownName;
use crate::domain::identity::{UnsafeText, check_readable_name};

/// A bank we pay cards of.
#[derive(Debug, PartialEq, Eq)]
pub struct Bank {
    /// The code Alipay and most Chinese payment systems abbreviate it by.
    pub code: &'static str,
    /// The name the bank styles itself by: what is stored and sent.
    pub name: &'static str,
    /// What people usually call it; the same as `name` when nothing shorter is usual.
    pub short_name: &'static str,
    /// Other codes in common use, and old names, accepted as well.
    other_codes: &'static [&'static str],
    other_names: &'static [&'static str],
}

/// Shorthand for the table.
const fn bank(
    code: &'static str,
    name: &'static str,
    short_name: &'static str,
    other_codes: &'static [&'static str],
    other_names: &'static [&'static str],
) -> Bank {
    Bank {
        code,
        name,
        short_name,
        other_codes,
        other_names,
    }
}

/// The banks we pay to: the six large state-owned commercial banks, the
/// twelve national joint-stock banks, and the two largest city banks.
/// Adding one is adding a line here (and a test that names it).
pub const BANKS: &[Bank] = &[
    bank("ICBC", "中国工商银行", "工商银行", &[], &[]),
    bank("ABC", "中国农业银行", "农业银行", &[], &[]),
    bank("BOC", "中国银行", "中国银行", &[], &[]),
    bank("CCB", "中国建设银行", "建设银行", &[], &[]),
    bank("COMM", "交通银行", "交通银行", &["BOCOM", "BCM"], &[]),
    bank(
        "PSBC",
        "中国邮政储蓄银行",
        "邮储银行",
        &[],
        &["邮政储蓄银行"],
    ),
    bank("CMB", "招商银行", "招商银行", &[], &[]),
    bank("SPDB", "上海浦东发展银行", "浦发银行", &[], &[]),
    bank("CITIC", "中信银行", "中信银行", &[], &[]),
    bank("CEB", "中国光大银行", "光大银行", &[], &[]),
    bank("HXB", "华夏银行", "华夏银行", &["HXBANK"], &[]),
    bank("CMBC", "中国民生银行", "民生银行", &[], &[]),
    bank("GDB", "广发银行", "广发银行", &["CGB"], &["广东发展银行"]),
    bank("SPABANK", "平安银行", "平安银行", &["PAB"], &[]),
    bank("CIB", "兴业银行", "兴业银行", &[], &[]),
    bank("CZBANK", "浙商银行", "浙商银行", &["CZB"], &[]),
    bank("BOHAIB", "渤海银行", "渤海银行", &["CBHB"], &[]),
    bank("EGBANK", "恒丰银行", "恒丰银行", &["HFB"], &[]),
    bank("BJBANK", "北京银行", "北京银行", &["BOB"], &[]),
    bank("SHBANK", "上海银行", "上海银行", &["BOSC"], &[]),
];

/// The bank `text` names, by any of its names (exactly, after trimming) or
/// codes (in any case).
pub fn find_bank(text: &str) -> Option<&'static Bank> {
    let text = text.trim();
    BANKS.iter().find(|bank| {
        bank.name == text
            || bank.short_name == text
            || bank.other_names.contains(&text)
            || bank.code.eq_ignore_ascii_case(text)
            || bank
                .other_codes
                .iter()
                .any(|code| code.eq_ignore_ascii_case(text))
    })
}

/// The main codes of [`BANKS`], comma-separated: what an error tells a
/// caller to send.
pub fn bank_codes() -> String {
    BANKS
        .iter()
        .map(|bank| bank.code)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Longest registered company name accepted, in characters. Chinese
/// registered names (`某某科技有限公司`) are rarely over 40.
pub const MAX_COMPANY_NAME_CHARS: usize = 100;
/// Longest province, city or branch name accepted, in characters: the
/// longest branch names (`中国工商银行股份有限公司…分行营业部`) are about 30.
pub const MAX_BRANCH_TEXT_CHARS: usize = 60;
/// Digits of a 联行号 (CNAPS bank code), which names one branch.
pub const BANK_CODE_DIGITS: usize = 12;

/// Why the bank details of a payout account were refused. Each names the
/// request field it is about; messages say what to send and never repeat
/// what was sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BankAccountError {
    #[error(
        "{field} must name a bank we pay to, by its Chinese name (中国工商银行 or 工商银行) or its code (ICBC): one of {}",
        bank_codes()
    )]
    UnknownBank { field: &'static str },
    #[error("account_type is \"2\" (a personal account, the default) or \"1\" (a company's)")]
    AccountType,
    #[error(
        "a company account (account_type \"1\") needs inst_name: the bank holding it, named as bank_name is"
    )]
    InstNameRequired,
    #[error(
        "a company account (account_type \"1\") needs holder_name: the company's registered name, as the bank knows the account"
    )]
    CompanyNameRequired,
    #[error(
        "a company account (account_type \"1\") needs bank_code (the branch's {BANK_CODE_DIGITS}-digit 联行号) or all of province, city and branch_name; {field} is missing"
    )]
    BranchRequired { field: &'static str },
    #[error("bank_code is the branch's 联行号: {BANK_CODE_DIGITS} digits")]
    BankCode,
    #[error("{field} must be 1–{MAX_BRANCH_TEXT_CHARS} characters without control characters")]
    BranchTextLength { field: &'static str },
    #[error("{field} {why}")]
    BranchTextUnsafe {
        field: &'static str,
        why: UnsafeText,
    },
    #[error(
        "holder_name of a company account must be 1–{MAX_COMPANY_NAME_CHARS} characters without control characters"
    )]
    CompanyNameLength,
    #[error("holder_name of a company account {0}")]
    CompanyNameUnsafe(UnsafeText),
    #[error(
        "{field} is for a company account only (account_type \"1\"); a personal account needs only card_number, bank_name and holder_name"
    )]
    CompanyFieldOnPersonal { field: &'static str },
}

impl BankAccountError {
    /// The stable code an API answer carries.
    pub fn code(&self) -> &'static str {
        match self {
            BankAccountError::UnknownBank { .. } => "unknown_bank",
            BankAccountError::AccountType => "invalid_account_type",
            BankAccountError::InstNameRequired => "inst_name_required",
            BankAccountError::CompanyNameRequired => "holder_name_required",
            BankAccountError::BranchRequired { .. } => "bank_branch_required",
            BankAccountError::BankCode => "invalid_bank_code",
            BankAccountError::BranchTextLength { .. }
            | BankAccountError::BranchTextUnsafe { .. } => "invalid_bank_branch",
            BankAccountError::CompanyNameLength | BankAccountError::CompanyNameUnsafe(_) => {
                "invalid_holder_name"
            }
            BankAccountError::CompanyFieldOnPersonal { .. } => "company_account_field",
        }
    }

    /// The request field it is about.
    pub fn field(&self) -> &'static str {
        match self {
            BankAccountError::UnknownBank { field }
            | BankAccountError::BranchRequired { field }
            | BankAccountError::BranchTextLength { field }
            | BankAccountError::BranchTextUnsafe { field, .. }
            | BankAccountError::CompanyFieldOnPersonal { field } => field,
            BankAccountError::AccountType => "account_type",
            BankAccountError::InstNameRequired => "inst_name",
            BankAccountError::CompanyNameRequired
            | BankAccountError::CompanyNameLength
            | BankAccountError::CompanyNameUnsafe(_) => "holder_name",
            BankAccountError::BankCode => "bank_code",
        }
    }
}

/// The bank of a card, refused unless it is in [`BANKS`]. `field` names the
/// request field it came from.
pub fn parse_bank(text: &str, field: &'static str) -> Result<&'static Bank, BankAccountError> {
    find_bank(text).ok_or(BankAccountError::UnknownBank { field })
}

/// Whose account a card is, as Alipay's `bankcard_ext_info.account_type`
/// says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BankAccountType {
    /// 对私: a person's account, `account_type` "2". What a card is when the
    /// request does not say.
    #[default]
    Personal,
    /// 对公: a company's account, `account_type` "1".
    Company,
}

impl BankAccountType {
    /// From Alipay's code, as a request gives it: "2" or "1".
    pub fn from_code(text: &str) -> Result<BankAccountType, BankAccountError> {
        match text.trim() {
            "2" => Ok(BankAccountType::Personal),
            "1" => Ok(BankAccountType::Company),
            _ => Err(BankAccountError::AccountType),
        }
    }

    /// Alipay's code: "2" personal, "1" company.
    pub fn code(self) -> &'static str {
        match self {
            BankAccountType::Personal => "2",
            BankAccountType::Company => "1",
        }
    }

    /// As stored: `personal` or `company`.
    pub fn as_str(self) -> &'static str {
        match self {
            BankAccountType::Personal => "personal",
            BankAccountType::Company => "company",
        }
    }

    pub fn parse(text: &str) -> Result<BankAccountType, UnknownName> {
        match text {
            "personal" => Ok(BankAccountType::Personal),
            "company" => Ok(BankAccountType::Company),
            other => Err(UnknownName(format!("bank account type {other:?}"))),
        }
    }
}

/// The company-only fields of a bank account as a request gives them, each
/// optional; a blank value counts as absent.
#[derive(Debug, Clone, Copy, Default)]
pub struct CompanyFields<'a> {
    pub inst_name: Option<&'a str>,
    pub bank_code: Option<&'a str>,
    pub province: Option<&'a str>,
    pub city: Option<&'a str>,
    pub branch_name: Option<&'a str>,
}

impl<'a> CompanyFields<'a> {
    /// The given (non-blank) fields, by request name, in the order they are
    /// reported.
    fn given(&self) -> [(&'static str, Option<&'a str>); 5] {
        let given = |value: Option<&'a str>| value.map(str::trim).filter(|text| !text.is_empty());
        [
            ("inst_name", given(self.inst_name)),
            ("bank_code", given(self.bank_code)),
            ("province", given(self.province)),
            ("city", given(self.city)),
            ("branch_name", given(self.branch_name)),
        ]
    }

    /// A personal account has none of these: refused rather than dropped,
    /// so a caller who meant a company account learns it said otherwise.
    pub fn refuse_on_personal(&self) -> Result<(), BankAccountError> {
        match self.given().into_iter().find(|(_, value)| value.is_some()) {
            Some((field, _)) => Err(BankAccountError::CompanyFieldOnPersonal { field }),
            None => Ok(()),
        }
    }
}

/// Where a company account is held, as the bank's clearing finds it: by the
/// branch's 联行号, by its province, city and name, or by both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompanyAccount {
    company_name: String,
    inst: &'static Bank,
    bank_code: Option<String>,
    location: Option<BranchLocation>,
}

/// A branch by place and name (开户行省份, 城市, 支行名称).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BranchLocation {
    pub province: String,
    pub city: String,
    pub branch_name: String,
}

impl CompanyAccount {
    /// Parses a company account: the company's registered name (the
    /// request's `holder_name`), the bank holding it (`inst_name`, one of
    /// [`BANKS`]), and `bank_code` or all of province, city and branch
    /// name. Missing fields are reported in that order.
    pub fn parse(
        company_name: Option<&str>,
        fields: &CompanyFields<'_>,
    ) -> Result<CompanyAccount, BankAccountError> {
        let [
            (_, inst_name),
            (_, bank_code),
            (_, province),
            (_, city),
            (_, branch_name),
        ] = fields.given();
        let company_name = company_name
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .ok_or(BankAccountError::CompanyNameRequired)?;
        if company_name.chars().count() > MAX_COMPANY_NAME_CHARS {
            return Err(BankAccountError::CompanyNameLength);
        }
        check_readable_name(company_name).map_err(BankAccountError::CompanyNameUnsafe)?;
        let inst = parse_bank(
            inst_name.ok_or(BankAccountError::InstNameRequired)?,
            "inst_name",
        )?;
        let bank_code = bank_code
            .map(|code| {
                let well_formed =
                    code.len() == BANK_CODE_DIGITS && code.bytes().all(|b| b.is_ascii_digit());
                well_formed
                    .then(|| code.to_owned())
                    .ok_or(BankAccountError::BankCode)
            })
            .transpose()?;
        let location = match (province, city, branch_name) {
            (None, None, None) => None,
            (Some(province), Some(city), Some(branch_name)) => Some(BranchLocation {
                province: branch_text(province, "province")?,
                city: branch_text(city, "city")?,
                branch_name: branch_text(branch_name, "branch_name")?,
            }),
            // Part of a location: whatever else was given, the caller meant
            // to give a location and left a field out.
            (province, city, _) => {
                let field = if province.is_none() {
                    "province"
                } else if city.is_none() {
                    "city"
                } else {
                    "branch_name"
                };
                return Err(BankAccountError::BranchRequired { field });
            }
        };
        if bank_code.is_none() && location.is_none() {
            return Err(BankAccountError::BranchRequired { field: "bank_code" });
        }
        Ok(CompanyAccount {
            company_name: company_name.to_owned(),
            inst,
            bank_code,
            location,
        })
    }

    /// The company's registered name: the payee's name on the transfer. A
    /// company's name is public registration data, so it is not sealed.
    pub fn company_name(&self) -> &str {
        &self.company_name
    }

    /// The bank holding the account (`inst_name`).
    pub fn inst(&self) -> &'static Bank {
        self.inst
    }

    /// The branch's 联行号, when given.
    pub fn bank_code(&self) -> Option<&str> {
        self.bank_code.as_deref()
    }

    /// The branch by place and name, when given.
    pub fn location(&self) -> Option<&BranchLocation> {
        self.location.as_ref()
    }
}

/// A province, city or branch name: trimmed, bounded, and safe to show on
/// the console and in an export.
fn branch_text(text: &str, field: &'static str) -> Result<String, BankAccountError> {
    if text.chars().count() > MAX_BRANCH_TEXT_CHARS || text.chars().any(char::is_control) {
        return Err(BankAccountError::BranchTextLength { field });
    }
    check_readable_name(text).map_err(|why| BankAccountError::BranchTextUnsafe { field, why })?;
    Ok(text.to_owned())
}

/// What a bank payout account is besides its card: a person's, or a
/// company's with its branch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BankAccountKind {
    Personal,
    Company(CompanyAccount),
}

impl BankAccountKind {
    pub fn account_type(&self) -> BankAccountType {
        match self {
            BankAccountKind::Personal => BankAccountType::Personal,
            BankAccountKind::Company(_) => BankAccountType::Company,
        }
    }

    /// The company account, when it is one.
    pub fn company(&self) -> Option<&CompanyAccount> {
        match self {
            BankAccountKind::Personal => None,
            BankAccountKind::Company(company) => Some(company),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bank_is_found_by_each_of_its_names_and_codes() {
        for bank in BANKS {
            let mut names = vec![bank.name, bank.short_name, bank.code];
            names.extend(bank.other_codes);
            names.extend(bank.other_names);
            for name in names {
                assert_eq!(find_bank(name), Some(bank), "{name}");
            }
        }
    }

    #[test]
    fn the_brief_s_banks_are_all_in_the_table_by_name_and_code() {
        for (name, code) in [
            ("工商银行", "ICBC"),
            ("农业银行", "ABC"),
            ("中国银行", "BOC"),
            ("建设银行", "CCB"),
            ("交通银行", "COMM"),
            ("邮储银行", "PSBC"),
            ("招商银行", "CMB"),
            ("浦发银行", "SPDB"),
            ("中信银行", "CITIC"),
            ("光大银行", "CEB"),
            ("华夏银行", "HXB"),
            ("民生银行", "CMBC"),
            ("广发银行", "GDB"),
            ("平安银行", "SPABANK"),
            ("兴业银行", "CIB"),
            ("北京银行", "BJBANK"),
            ("上海银行", "SHBANK"),
        ] {
            let by_name = find_bank(name).unwrap_or_else(|| panic!("{name}"));
            assert_eq!(by_name.code, code, "{name}");
            assert_eq!(find_bank(code), Some(by_name));
        }
    }

    #[test]
    fn no_name_or_code_names_two_banks() {
        let mut seen = std::collections::HashSet::new();
        for bank in BANKS {
            let mut keys: Vec<String> = vec![bank.name.to_owned(), bank.code.to_ascii_uppercase()];
            if bank.short_name != bank.name {
                keys.push(bank.short_name.to_owned());
            }
            keys.extend(
                bank.other_codes
                    .iter()
                    .map(|code| code.to_ascii_uppercase()),
            );
            keys.extend(bank.other_names.iter().map(|name| (*name).to_owned()));
            for key in keys {
                assert!(seen.insert(key.clone()), "{key} names two banks");
            }
        }
    }

    #[test]
    fn codes_are_matched_in_any_case_and_names_after_trimming() {
        assert_eq!(find_bank("icbc").unwrap().name, "中国工商银行");
        assert_eq!(find_bank("Cmb").unwrap().name, "招商银行");
        assert_eq!(find_bank("  工商银行 ").unwrap().code, "ICBC");
        assert_eq!(find_bank("bocom").unwrap().code, "COMM");
    }

    #[test]
    fn anything_else_is_not_a_bank_we_pay_to() {
        for text in [
            "",
            "  ",
            "工行",
            "中国工商",
            "招商",
            "Bank of Nowhere",
            "ICBC1",
            "中国工商银行股份有限公司",
            "花旗银行",
            "b",
        ] {
            assert_eq!(find_bank(text), None, "{text:?}");
            assert_eq!(
                parse_bank(text, "bank_name").unwrap_err(),
                BankAccountError::UnknownBank { field: "bank_name" }
            );
        }
    }

    #[test]
    fn the_unknown_bank_message_says_what_to_send_and_names_the_field() {
        let error = BankAccountError::UnknownBank { field: "bank_name" };
        let message = error.to_string();
        assert!(
            message.starts_with("bank_name must name a bank"),
            "{message}"
        );
        for bank in BANKS {
            assert!(message.contains(bank.code), "{message}");
        }
        assert_eq!((error.code(), error.field()), ("unknown_bank", "bank_name"));
    }

    #[test]
    fn account_types_are_alipays_codes_and_stored_as_words() {
        assert_eq!(
            BankAccountType::from_code("2").unwrap(),
            BankAccountType::Personal
        );
        assert_eq!(
            BankAccountType::from_code("1").unwrap(),
            BankAccountType::Company
        );
        for bad in ["", "0", "3", "personal", "12"] {
            assert_eq!(
                BankAccountType::from_code(bad).unwrap_err(),
                BankAccountError::AccountType
            );
        }
        for kind in [BankAccountType::Personal, BankAccountType::Company] {
            assert_eq!(BankAccountType::parse(kind.as_str()).unwrap(), kind);
        }
        assert_eq!(BankAccountType::default(), BankAccountType::Personal);
    }

    const COMPANY: &str = "杭州某某科技有限公司";

    fn by_code() -> CompanyFields<'static> {
        CompanyFields {
            inst_name: Some("招商银行"),
            bank_code: Some("308331012345"),
            ..CompanyFields::default()
        }
    }

    fn by_location() -> CompanyFields<'static> {
        CompanyFields {
            inst_name: Some("ICBC"),
            province: Some("浙江省"),
            city: Some("杭州市"),
            branch_name: Some("中国工商银行杭州分行营业部"),
            ..CompanyFields::default()
        }
    }

    #[test]
    fn a_company_account_is_found_by_its_bank_code_or_its_branch_location() {
        let account = CompanyAccount::parse(Some(COMPANY), &by_code()).unwrap();
        assert_eq!(account.company_name(), COMPANY);
        assert_eq!(account.inst().name, "招商银行");
        assert_eq!(account.bank_code(), Some("308331012345"));
        assert_eq!(account.location(), None);

        let account = CompanyAccount::parse(Some(COMPANY), &by_location()).unwrap();
        assert_eq!(
            account.inst().name,
            "中国工商银行",
            "stored by its canonical name"
        );
        assert_eq!(account.bank_code(), None);
        assert_eq!(account.location().unwrap().city, "杭州市");

        let both = CompanyFields {
            bank_code: Some("102331000010"),
            ..by_location()
        };
        let account = CompanyAccount::parse(Some(COMPANY), &both).unwrap();
        assert!(account.bank_code().is_some() && account.location().is_some());
    }

    #[test]
    fn a_company_account_without_branch_or_bank_code_is_refused_naming_what_is_missing() {
        let none = CompanyFields {
            inst_name: Some("招商银行"),
            ..CompanyFields::default()
        };
        let error = CompanyAccount::parse(Some(COMPANY), &none).unwrap_err();
        assert_eq!(
            error,
            BankAccountError::BranchRequired { field: "bank_code" }
        );
        assert_eq!(error.code(), "bank_branch_required");

        for (fields, missing) in [
            (
                CompanyFields {
                    province: None,
                    ..by_location()
                },
                "province",
            ),
            (
                CompanyFields {
                    city: Some("  "),
                    ..by_location()
                },
                "city",
            ),
            (
                CompanyFields {
                    branch_name: None,
                    ..by_location()
                },
                "branch_name",
            ),
            (
                // A bank code does not excuse half a location: it says the
                // caller meant one.
                CompanyFields {
                    branch_name: None,
                    bank_code: Some("102331000010"),
                    ..by_location()
                },
                "branch_name",
            ),
        ] {
            let error = CompanyAccount::parse(Some(COMPANY), &fields).unwrap_err();
            assert_eq!(error, BankAccountError::BranchRequired { field: missing });
            assert_eq!(error.field(), missing);
        }
    }

    #[test]
    fn a_company_account_needs_its_bank_and_its_companys_name() {
        let no_inst = CompanyFields {
            inst_name: None,
            ..by_code()
        };
        let error = CompanyAccount::parse(Some(COMPANY), &no_inst).unwrap_err();
        assert_eq!(
            (error.code(), error.field()),
            ("inst_name_required", "inst_name")
        );

        let unknown = CompanyFields {
            inst_name: Some("某某银行"),
            ..by_code()
        };
        let error = CompanyAccount::parse(Some(COMPANY), &unknown).unwrap_err();
        assert_eq!((error.code(), error.field()), ("unknown_bank", "inst_name"));

        for name in [None, Some(""), Some("   ")] {
            let error = CompanyAccount::parse(name, &by_code()).unwrap_err();
            assert_eq!(
                (error.code(), error.field()),
                ("holder_name_required", "holder_name")
            );
        }
        let long = "公".repeat(MAX_COMPANY_NAME_CHARS + 1);
        assert_eq!(
            CompanyAccount::parse(Some(&long), &by_code()).unwrap_err(),
            BankAccountError::CompanyNameLength
        );
        assert_eq!(
            CompanyAccount::parse(Some("=HYPERLINK(1)"), &by_code()).unwrap_err(),
            BankAccountError::CompanyNameUnsafe(UnsafeText::FormulaLead)
        );
    }

    #[test]
    fn a_bank_code_is_twelve_digits() {
        for bad in [
            "30833101234",
            "3083310123456",
            "30833101234X",
            "３08331012345",
        ] {
            let fields = CompanyFields {
                bank_code: Some(bad),
                ..by_code()
            };
            let error = CompanyAccount::parse(Some(COMPANY), &fields).unwrap_err();
            assert_eq!(error, BankAccountError::BankCode, "{bad}");
            assert_eq!(error.field(), "bank_code");
        }
    }

    #[test]
    fn branch_text_is_bounded_and_safe_to_show() {
        let long = "支".repeat(MAX_BRANCH_TEXT_CHARS + 1);
        let fields = CompanyFields {
            branch_name: Some(&long),
            ..by_location()
        };
        assert_eq!(
            CompanyAccount::parse(Some(COMPANY), &fields).unwrap_err(),
            BankAccountError::BranchTextLength {
                field: "branch_name"
            }
        );
        let fields = CompanyFields {
            city: Some("杭州\u{202E}市"),
            ..by_location()
        };
        let error = CompanyAccount::parse(Some(COMPANY), &fields).unwrap_err();
        assert_eq!(
            (error.code(), error.field()),
            ("invalid_bank_branch", "city")
        );
    }

    #[test]
    fn a_personal_account_refuses_company_fields_and_accepts_none() {
        CompanyFields::default().refuse_on_personal().unwrap();
        let blank = CompanyFields {
            inst_name: Some(" "),
            ..CompanyFields::default()
        };
        blank.refuse_on_personal().unwrap();
        let error = by_location().refuse_on_personal().unwrap_err();
        assert_eq!(
            (error.code(), error.field()),
            ("company_account_field", "inst_name")
        );
        let error = CompanyFields {
            city: Some("杭州市"),
            ..CompanyFields::default()
        }
        .refuse_on_personal()
        .unwrap_err();
        assert_eq!(error.field(), "city");
    }
}
