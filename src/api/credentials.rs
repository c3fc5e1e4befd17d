//! Payout credentials (SPEC §2.5): `PUT /v1/distributors/{id}/identity`,
//! `POST` and `GET /v1/distributors/{id}/payout-accounts`.
//!
//! Bodies are read into `SecretString`s, parsed into the identity types, and
//! sealed before they reach the store; answers show masks only. Errors name
//! the field and the rule, never the value.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::api::error::{ApiError, ErrorBody};
use crate::api::extract::JsonBody;
use crate::api::policy::{Owner, SelfOrIngest, SelfOrOpsAdmin};
use crate::api::responses::{AuthRefusals, BodyRefusals};
use crate::domain::banks::{
    self, BankAccountError, BankAccountKind, BankAccountType, CompanyAccount, CompanyFields,
};
use crate::domain::identity::PayoutChannel;
use crate::domain::identity::{
    AlipayAccount, BankCardNumber, IdNumber, IdentityError, RealName, WechatOpenId,
};
use crate::domain::ids::DistributorId;
use crate::state::AppState;
use crate::store::{SealedIdentity, SealedPayoutAccount, StoreError};
use crate::vault::credentials::{NewAccount, changed_identity_fields, seal_account, seal_identity};

/// Reads a credential field as a `SecretString`. A value of another JSON
/// type is refused without being quoted: serde's own message would repeat a
/// number (`invalid type: integer `110101…``) in the answer.
fn secret_text<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<SecretString, D::Error> {
    struct Text;

    impl serde::de::Visitor<'_> for Text {
        type Value = SecretString;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a string")
        }

        fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<SecretString, E> {
            Ok(SecretString::from(text))
        }

        fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<SecretString, E> {
            Err(E::custom("expected a string"))
        }

        fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<SecretString, E> {
            Err(E::custom("expected a string"))
        }

        fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<SecretString, E> {
            Err(E::custom("expected a string"))
        }

        fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<SecretString, E> {
            Err(E::custom("expected a string"))
        }
    }

    // `deserialize_any`, not `deserialize_str`: serde_json answers a number
    // given to `deserialize_str` with its own message, value included.
    deserializer.deserialize_any(Text)
}

/// [`secret_text`] for an optional field.
fn optional_secret_text<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<SecretString>, D::Error> {
    #[derive(Deserialize)]
    struct Wrapped(#[serde(deserialize_with = "secret_text")] SecretString);
    Ok(Option::<Wrapped>::deserialize(deserializer)?.map(|Wrapped(text)| text))
}

/// Civil dates (an ID number's birth date) are Beijing time's.
const CIVIL_TIME_ZONE: chrono_tz::Tz = chrono_tz::Asia::Shanghai;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutIdentity {
    /// The legal name as on the ID card (真实姓名).
    #[schema(value_type = String)]
    #[serde(deserialize_with = "secret_text")]
    pub real_name: SecretString,
    /// 18-character resident ID number with a valid check character.
    #[schema(value_type = String)]
    #[serde(deserialize_with = "secret_text")]
    pub id_number: SecretString,
}

/// An identity as every answer shows it: masked.
#[derive(Debug, Serialize, ToSchema)]
pub struct MaskedIdentity {
    /// `张**`
    pub real_name: String,
    /// `110***********1234`
    pub id_number: String,
}

impl From<&SealedIdentity> for MaskedIdentity {
    fn from(identity: &SealedIdentity) -> MaskedIdentity {
        MaskedIdentity {
            real_name: identity.masked_name.clone(),
            id_number: identity.masked_id_number.clone(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct IdentityView {
    pub distributor_id: DistributorId,
    /// `张**`
    pub real_name: String,
    /// `110***********1234`
    pub id_number: String,
}

/// A new payout account; `channel` says which fields it has.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(tag = "channel", rename_all = "snake_case", deny_unknown_fields)]
pub enum NewPayoutAccount {
    /// WeChat Pay: the payee's openid under our app id.
    Wechat {
        #[schema(value_type = String)]
        #[serde(deserialize_with = "secret_text")]
        openid: SecretString,
    },
    /// Alipay: an email address or an 11-digit mainland mobile number.
    Alipay {
        #[schema(value_type = String)]
        #[serde(deserialize_with = "secret_text")]
        account: SecretString,
    },
    /// A bank card: its number, the bank, whose account it is (a person's by
    /// default, or a company's), and the holder. A company's account also
    /// names its bank (`inst_name`) and its branch: `bank_code`, or all of
    /// `province`, `city` and `branch_name`, or both.
    Bank {
        /// 12–19 digits passing the Luhn check; spaces and `-` are ignored.
        #[schema(value_type = String, example = "6222021234567894")]
        #[serde(deserialize_with = "secret_text")]
        card_number: SecretString,
        /// One of the banks we pay to (src/domain/banks.rs), by its Chinese
        /// name, full or short (`中国工商银行`, `工商银行`), or its code in any
        /// case (`ICBC`, `ABC`, `BOC`, `CCB`, `COMM`, `PSBC`, `CMB`, `SPDB`,
        /// `CITIC`, `CEB`, `HXB`, `CMBC`, `GDB`, `SPABANK`, `CIB`, `CZBANK`,
        /// `BOHAIB`, `EGBANK`, `BJBANK`, `SHBANK`). Stored and shown by its
        /// full Chinese name.
        #[schema(example = "招商银行")]
        bank_name: String,
        /// A personal account: the holder's real name, optional. A company
        /// account: the company's registered name, required (the bank checks
        /// the transfer's payee name against it).
        #[schema(value_type = Option<String>)]
        #[serde(default, deserialize_with = "optional_secret_text")]
        holder_name: Option<SecretString>,
        /// Alipay's `account_type`: `"2"` a person's account (对私, the
        /// default), `"1"` a company's (对公).
        #[schema(pattern = "^[12]$", example = "2")]
        #[serde(default)]
        account_type: Option<String>,
        /// Company accounts only, required: the bank holding the account,
        /// named as `bank_name` is (usually the same bank).
        #[serde(default)]
        inst_name: Option<String>,
        /// Company accounts only: the branch's 联行号, 12 digits. Required
        /// unless `province`, `city` and `branch_name` are all given.
        #[schema(pattern = "^[0-9]{12}$", example = "308331012345")]
        #[serde(default)]
        bank_code: Option<String>,
        /// Company accounts only: the branch's province (开户行省份).
        #[serde(default)]
        province: Option<String>,
        /// Company accounts only: the branch's city (开户行城市).
        #[serde(default)]
        city: Option<String>,
        /// Company accounts only: the branch's name (支行名称).
        #[serde(default)]
        branch_name: Option<String>,
    },
}

/// A payout account as every answer shows it: masked.
#[derive(Debug, Serialize, ToSchema)]
pub struct PayoutAccountView {
    /// `pa_…`: what a withdrawal names as its `payout_account_id`.
    pub id: String,
    pub distributor_id: DistributorId,
    pub channel: PayoutChannel,
    /// `oUpF***Ddw4`, `138****5678`, `a***@example.com` or `6222 **** **** 1234`.
    pub account: String,
    /// Bank accounts: the bank's full Chinese name (`招商银行`, `中国工商银行`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bank_name: Option<String>,
    /// The bank card holder: a person's name masked (`张**`), when one was
    /// given; a company's registered name in full (it is public).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub holder_name: Option<String>,
    /// Bank accounts: `"2"` a person's, `"1"` a company's.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, example = "2")]
    pub account_type: Option<&'static str>,
    /// Company accounts: the bank holding it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inst_name: Option<String>,
    /// Company accounts: the branch's 联行号, when given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bank_code: Option<String>,
    /// Company accounts: the branch's province, city and name, when given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub province: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub branch_name: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl From<SealedPayoutAccount> for PayoutAccountView {
    fn from(account: SealedPayoutAccount) -> PayoutAccountView {
        let kind = account.bank_account.as_ref();
        let company = kind.and_then(BankAccountKind::company);
        let location = company.and_then(CompanyAccount::location);
        let text = |value: Option<&str>| value.map(str::to_owned);
        let account_type = kind.map(|kind| kind.account_type().code());
        let inst_name = text(company.map(|company| company.inst().name));
        let bank_code = text(company.and_then(CompanyAccount::bank_code));
        let province = text(location.map(|place| place.province.as_str()));
        let city = text(location.map(|place| place.city.as_str()));
        let branch_name = text(location.map(|place| place.branch_name.as_str()));
        let holder_name =
            text(company.map(CompanyAccount::company_name)).or(account.account_name_masked);
        PayoutAccountView {
            id: account.id.into_string(),
            distributor_id: account.distributor_id,
            channel: account.channel,
            account: account.masked,
            bank_name: account.bank_name,
            holder_name,
            account_type,
            inst_name,
            bank_code,
            province,
            city,
            branch_name,
            created_at: account.created_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PayoutAccountList {
    /// Oldest first.
    pub items: Vec<PayoutAccountView>,
}

/// 422 for a refused credential, naming the request's field (which is not
/// always the domain type's name for it) and never the value.
fn refused(code: &'static str, field: &str, error: IdentityError) -> ApiError {
    ApiError::unprocessable(code, error.to_string()).with_field(field)
}

/// 422 for refused bank details: the error carries its code and field.
fn bank_refused(error: BankAccountError) -> ApiError {
    ApiError::unprocessable(error.code(), error.to_string()).with_field(error.field())
}

/// 404 unless the distributor exists.
async fn require_distributor(state: &AppState, id: &DistributorId) -> Result<(), ApiError> {
    state
        .store
        .distributor(id)
        .await?
        .map(|_| ())
        .ok_or_else(|| ApiError::not_found("distributor"))
}

fn missing_distributor(error: StoreError) -> ApiError {
    match error {
        // Deleted between the check and the insert (distributors are not
        // deleted today; the foreign key still has the last word).
        StoreError::NotFound { .. } => ApiError::not_found("distributor"),
        other => other.into(),
    }
}

#[utoipa::path(
    put, path = "/v1/distributors/{id}/identity", tag = "credentials",
    params(("id" = String, Path)),
    request_body = PutIdentity,
    responses(
        (status = 200, description = "stored (replacing any earlier identity), shown masked", body = IdentityView),
        (status = 400, description = "invalid_id (path), malformed_json, missing_field, unknown_field, invalid_field", body = ErrorBody),
        AuthRefusals, BodyRefusals,
        (status = 404, body = ErrorBody),
        (status = 422, description = "invalid_real_name (length, control, bidi or zero-width characters, a leading =, +, -, @) or invalid_id_number (bad format, check character or birth date)", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn put_identity(
    State(state): State<AppState>,
    caller: Owner<SelfOrIngest>,
    JsonBody(request): JsonBody<PutIdentity>,
) -> Result<Json<IdentityView>, ApiError> {
    use secrecy::ExposeSecret as _;
    let id = caller.distributor.clone();
    let now = state.clock.now();
    let real_name = RealName::parse(request.real_name.expose_secret())
        .map_err(|error| refused("invalid_real_name", "real_name", error))?;
    let today = now.with_timezone(&CIVIL_TIME_ZONE).date_naive();
    let id_number = IdNumber::parse(request.id_number.expose_secret(), today)
        .map_err(|error| refused("invalid_id_number", "id_number", error))?;
    require_distributor(&state, &id).await?;
    let sealed = seal_identity(&state.vault, &id, &real_name, &id_number, now)
        .map_err(ApiError::internal)?;
    // A change after a certificate is audited and sends the next withdrawal
    // to review; whether it is a change takes the old values in the clear.
    let compare = |stored: &SealedIdentity| {
        changed_identity_fields(&state.vault, stored, &real_name, &id_number)
            .map_err(|error| StoreError::Corrupt(format!("opening the stored identity: {error}")))
    };
    let stored = state
        .store
        .put_identity(&sealed, &crate::service::audit::Actor::of(&caller), compare)
        .await
        .map_err(missing_distributor)?;
    tracing::info!(distributor_id = %id, key_id = %stored.key_id, "identity stored");
    Ok(Json(IdentityView {
        distributor_id: id,
        real_name: stored.masked_name,
        id_number: stored.masked_id_number,
    }))
}

#[utoipa::path(
    post, path = "/v1/distributors/{id}/payout-accounts", tag = "credentials",
    params(("id" = String, Path)),
    request_body = NewPayoutAccount,
    responses(
        (status = 201, description = "added, shown masked", body = PayoutAccountView),
        (status = 400, description = "invalid_id (path), malformed_json, missing_field, unknown_field, invalid_field (e.g. an unknown channel)", body = ErrorBody),
        AuthRefusals, BodyRefusals,
        (status = 404, body = ErrorBody),
        (status = 422, description = "invalid_openid, invalid_alipay_account (neither an 11-digit mainland mobile number nor an email), invalid_card_number (format or Luhn check), unknown_bank (bank_name or inst_name not a bank we pay to; the message lists the codes), invalid_account_type (not \"1\" or \"2\"), invalid_holder_name; for a company account (account_type \"1\"): holder_name_required, inst_name_required, bank_branch_required (neither bank_code nor all of province, city and branch_name; the field names what is missing), invalid_bank_code (not 12 digits), invalid_bank_branch; for a personal one: company_account_field (a company-only field was given). Nothing is stored.", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn add_payout_account(
    State(state): State<AppState>,
    Owner {
        distributor: id, ..
    }: Owner<SelfOrIngest>,
    JsonBody(request): JsonBody<NewPayoutAccount>,
) -> Result<(StatusCode, Json<PayoutAccountView>), ApiError> {
    use secrecy::ExposeSecret as _;
    let now = state.clock.now();
    let new = |channel, masked| NewAccount {
        distributor: &id,
        channel,
        masked,
        account_name_masked: None,
        bank_name: None,
        bank_account: None,
    };
    // Each arm parses its value and seals it straight away, so the parsed
    // secret never leaves the arm.
    let sealed = match &request {
        NewPayoutAccount::Wechat { openid } => {
            let openid = WechatOpenId::parse(openid.expose_secret())
                .map_err(|error| refused("invalid_openid", "openid", error))?;
            require_distributor(&state, &id).await?;
            seal_account(
                &state.vault,
                new(PayoutChannel::Wechat, openid.masked()),
                &openid,
                now,
            )
        }
        NewPayoutAccount::Alipay { account } => {
            let account = AlipayAccount::parse(account.expose_secret())
                .map_err(|error| refused("invalid_alipay_account", "account", error))?;
            require_distributor(&state, &id).await?;
            seal_account(
                &state.vault,
                new(PayoutChannel::Alipay, account.masked()),
                &account,
                now,
            )
        }
        NewPayoutAccount::Bank {
            card_number,
            bank_name,
            holder_name,
            account_type,
            inst_name,
            bank_code,
            province,
            city,
            branch_name,
        } => {
            let card = BankCardNumber::parse(card_number.expose_secret())
                .map_err(|error| refused("invalid_card_number", "card_number", error))?;
            let bank = banks::parse_bank(bank_name, "bank_name").map_err(bank_refused)?;
            let account_type = account_type
                .as_deref()
                .map(BankAccountType::from_code)
                .transpose()
                .map_err(bank_refused)?
                .unwrap_or_default();
            let company_fields = CompanyFields {
                inst_name: inst_name.as_deref(),
                bank_code: bank_code.as_deref(),
                province: province.as_deref(),
                city: city.as_deref(),
                branch_name: branch_name.as_deref(),
            };
            let (bank_account, holder_masked) = match account_type {
                BankAccountType::Personal => {
                    company_fields.refuse_on_personal().map_err(bank_refused)?;
                    let holder = holder_name
                        .as_ref()
                        .map(|name| RealName::parse(name.expose_secret()))
                        .transpose()
                        .map_err(|error| refused("invalid_holder_name", "holder_name", error))?;
                    (
                        BankAccountKind::Personal,
                        holder.as_ref().map(RealName::masked),
                    )
                }
                // A company's registered name is public: it is kept whole,
                // and sent as the payee's name.
                BankAccountType::Company => {
                    let holder = holder_name.as_ref().map(|name| name.expose_secret());
                    let company =
                        CompanyAccount::parse(holder, &company_fields).map_err(bank_refused)?;
                    (BankAccountKind::Company(company), None)
                }
            };
            require_distributor(&state, &id).await?;
            seal_account(
                &state.vault,
                NewAccount {
                    account_name_masked: holder_masked,
                    bank_name: Some(bank.name.to_owned()),
                    bank_account: Some(bank_account),
                    ..new(PayoutChannel::Bank, card.masked())
                },
                &card,
                now,
            )
        }
    }
    .map_err(ApiError::internal)?;
    state
        .store
        .insert_payout_account(&sealed)
        .await
        .map_err(missing_distributor)?;
    tracing::info!(
        distributor_id = %id,
        payout_account_id = %sealed.id,
        channel = sealed.channel.as_str(),
        "payout account added"
    );
    Ok((StatusCode::CREATED, Json(sealed.into())))
}

#[utoipa::path(
    get, path = "/v1/distributors/{id}/payout-accounts", tag = "credentials",
    params(("id" = String, Path)),
    responses(
        (status = 200, description = "the distributor's payout accounts, masked", body = PayoutAccountList),
        (status = 400, description = "invalid_id", body = ErrorBody),
        AuthRefusals,
        (status = 404, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list_payout_accounts(
    State(state): State<AppState>,
    Owner {
        distributor: id, ..
    }: Owner<SelfOrOpsAdmin>,
) -> Result<Json<PayoutAccountList>, ApiError> {
    require_distributor(&state, &id).await?;
    let accounts = state.store.payout_accounts(&id).await?;
    Ok(Json(PayoutAccountList {
        items: accounts.into_iter().map(Into::into).collect(),
    }))
}
