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
use crate::domain::identity::PayoutChannel;
use crate::domain::identity::{
    AlipayAccount, BankCardNumber, IdNumber, IdentityError, RealName, WechatOpenId,
};
use crate::domain::ids::DistributorId;
use crate::state::AppState;
use crate::store::{SealedIdentity, SealedPayoutAccount, StoreError};
use crate::vault::credentials::{NewAccount, changed_identity_fields, seal_account, seal_identity};

/// Longest bank name (characters) accepted: `中国工商银行股份有限公司…` fits.
const MAX_BANK_NAME_CHARS: usize = 50;

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
    /// A bank card: its number, the bank, and the holder's name if given.
    Bank {
        #[schema(value_type = String)]
        #[serde(deserialize_with = "secret_text")]
        card_number: SecretString,
        bank_name: String,
        #[schema(value_type = Option<String>)]
        #[serde(default, deserialize_with = "optional_secret_text")]
        holder_name: Option<SecretString>,
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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bank_name: Option<String>,
    /// The bank card holder's name, masked (`张**`), when one was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub holder_name: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl From<SealedPayoutAccount> for PayoutAccountView {
    fn from(account: SealedPayoutAccount) -> PayoutAccountView {
        PayoutAccountView {
            id: account.id.into_string(),
            distributor_id: account.distributor_id,
            channel: account.channel,
            account: account.masked,
            bank_name: account.bank_name,
            holder_name: account.account_name_masked,
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
        (status = 422, description = "invalid_openid, invalid_alipay_account, invalid_card_number or invalid_holder_name", body = ErrorBody),
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
        } => {
            let card = BankCardNumber::parse(card_number.expose_secret())
                .map_err(|error| refused("invalid_card_number", "card_number", error))?;
            let bank_name = bank_name.trim();
            if bank_name.is_empty()
                || bank_name.chars().count() > MAX_BANK_NAME_CHARS
                || bank_name.chars().any(char::is_control)
            {
                return Err(ApiError::bad_request(
                    "invalid_field",
                    format!("bank_name must be 1–{MAX_BANK_NAME_CHARS} printable characters"),
                )
                .with_field("bank_name"));
            }
            let holder = holder_name
                .as_ref()
                .map(|name| RealName::parse(name.expose_secret()))
                .transpose()
                .map_err(|error| refused("invalid_holder_name", "holder_name", error))?;
            require_distributor(&state, &id).await?;
            seal_account(
                &state.vault,
                NewAccount {
                    account_name_masked: holder.as_ref().map(RealName::masked),
                    bank_name: Some(bank_name.to_owned()),
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
