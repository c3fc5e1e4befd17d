//! Envelope encryption of payout credentials (SPEC §2.5): real names, ID
//! numbers, bank cards, Alipay accounts and WeChat openids are stored only as
//! [`SealedValue`]s, so a database dump holds no plaintext credential.
//!
//! ```text
//! plaintext ──AES-256-GCM(data key, nonce₁, AAD "V")──► ciphertext
//! data key  ──AES-256-GCM(master key, nonce₂, AAD "K" + key id)──► wrapped key
//! stored    = version ‖ key id ‖ nonce₂ ‖ wrapped key ‖ nonce₁ ‖ ciphertext
//! ```
//!
//! - Every value gets a fresh random 256-bit **data key**, used once; the
//!   [`MasterKey`] only ever encrypts data keys. Both layers use `ring`'s
//!   AES-256-GCM with random 96-bit nonces: each data key encrypts exactly one
//!   message, and the master key wraps one data key per sealed value, far
//!   below the 2³² random-nonce messages a GCM key may safely take.
//! - The **AAD** ([`Aad`]: table, column, row id) is bound into both layers,
//!   so a ciphertext copied to another row or column does not open.
//! - The **key id** ([`KeyId`]) travels with every value, so a [`Vault`] that
//!   holds the current key and the previous ones opens values sealed under
//!   any of them, and `fenrun keys rotate` calls [`Vault::reseal`] on each
//!   value whose key is not current ([`Vault::needs_reseal`]).
//! - The master key comes from the [`KeySources`] of the settings (SPEC §5):
//!   `FENRUN_MASTER_KEY_FILE`, or `FENRUN_MASTER_KEY`, or — for SQLite only —
//!   a development key file created beside the database with a loud warning
//!   ([`MasterKey::load`]).
//!
//! Nothing here logs or formats a key or a plaintext: `Debug` of every type
//! shows key ids and lengths only, and errors never carry secret bytes.

pub mod credentials;
mod keys;

pub use keys::{KeySources, MasterKey, previous_keys};

use std::fmt;
use std::io;
use std::path::PathBuf;

use ring::aead::{self, AES_256_GCM, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::digest;
use ring::rand::{SecureRandom, SystemRandom};
use secrecy::zeroize::Zeroizing;
use secrecy::{ExposeSecret, SecretBox, SecretString};

use crate::domain::digest::hex_lower;

/// Environment variable naming a file that holds the master key.
pub const MASTER_KEY_FILE_ENV: &str = "FENRUN_MASTER_KEY_FILE";
/// Environment variable holding the master key itself.
pub const MASTER_KEY_ENV: &str = "FENRUN_MASTER_KEY";
/// Environment variable holding the previous master key(s), during a
/// rotation: keys separated by commas or whitespace. They only open values.
pub const PREVIOUS_KEYS_ENV: &str = "FENRUN_MASTER_KEY_PREVIOUS";
/// Environment variable naming a file of previous master keys, one a line.
pub const PREVIOUS_KEYS_FILE_ENV: &str = "FENRUN_MASTER_KEY_PREVIOUS_FILE";
/// Most previous keys accepted: a rotation retires one key at a time, so a
/// handful covers an interrupted rotation or two.
pub const MAX_PREVIOUS_KEYS: usize = 8;
/// Name of the development key file created beside a SQLite database.
pub const DEV_KEY_FILE_NAME: &str = "fenrun-dev-master.key";
/// Longest plaintext sealed, in bytes. Credentials are tens of bytes; the
/// limit keeps a stored value (and a corrupt length) from ever being large.
pub const MAX_PLAINTEXT_BYTES: usize = 4096;
/// Longest key id in the stored form (derived ids are 16 characters).
pub const MAX_KEY_ID_BYTES: usize = 64;

/// Length of a master key and of a data key: AES-256.
const KEY_BYTES: usize = 32;
/// Length of an AES-GCM tag.
const TAG_BYTES: usize = 16;
/// A data key after wrapping: its ciphertext and tag.
const WRAPPED_KEY_BYTES: usize = KEY_BYTES + TAG_BYTES;
/// The stored-form version this code writes; [`SealedValue::from_stored`]
/// refuses any other, so a future layout can be told apart by its first byte.
const FORMAT_V1: u8 = 1;
/// A key file larger than this is not a key file; it is not read into memory.
const MAX_KEY_FILE_BYTES: u64 = 1024;
/// Prefix of every AAD, so these bytes can never be mistaken for another
/// protocol's associated data.
const AAD_LABEL: &[u8] = b"fenrun-vault";
/// Domain-separation prefix of the key-id hash.
const KEY_ID_LABEL: &[u8] = b"fenrun master key id\0";
/// Bytes of the SHA-256 kept in a key id: 64 bits, printed as 16 hex digits.
const KEY_ID_HASH_BYTES: usize = 8;

/// Why a key could not be loaded or a value could not be sealed or opened.
/// No variant carries key or plaintext bytes.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("set {MASTER_KEY_FILE_ENV} or {MASTER_KEY_ENV}, not both")]
    AmbiguousKeySource,
    #[error(
        "a PostgreSQL deployment needs a master key: set {MASTER_KEY_FILE_ENV} to a file holding \
         64 hex digits or the base64 of 32 random bytes (or set {MASTER_KEY_ENV})"
    )]
    MissingMasterKey,
    #[error("the database URL must start with sqlite: or postgres:")]
    UnknownDatabase,
    #[error("{origin} must hold a 256-bit key: 64 hex digits or the base64 of 32 bytes")]
    MalformedKey { origin: String },
    #[error("master key file {}: {source}", .path.display())]
    KeyFile {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The value names a key this vault was not given (a previous key left
    /// out after a rotation that did not finish, or another deployment's).
    #[error("the value was sealed under master key {0}, which this vault does not hold")]
    UnknownKey(KeyId),
    /// The stored bytes are not a sealed value this code can read.
    #[error("set {PREVIOUS_KEYS_FILE_ENV} or {PREVIOUS_KEYS_ENV}, not both")]
    AmbiguousPreviousKeySource,
    #[error("at most {MAX_PREVIOUS_KEYS} previous master keys may be given")]
    TooManyPreviousKeys,
    #[error("the stored value is malformed: {0}")]
    Malformed(&'static str),
    /// AES-GCM refused the value: the key, the row, the column or a byte is
    /// not what it was sealed with. Deliberately not more precise.
    #[error("the stored value does not authenticate (wrong key, row or column, or altered)")]
    Authentication,
    #[error("a value to seal may be at most {MAX_PLAINTEXT_BYTES} bytes")]
    TooLong,
    #[error("the system random number generator failed")]
    Random,
    #[error("key derivation failed")]
    Derivation,
}

/// A master key's public name, stored beside every value it wrapped: the
/// first 8 bytes of SHA-256(`"fenrun master key id\0"` ‖ key) in lower-case
/// hex (16 characters).
///
/// Deriving it from the key, rather than reading a name from configuration,
/// means the same key always has the same id on every machine, two keys can
/// never share an id by operator error, and no extra file or variable has to
/// travel with the key. 64 bits of a hash reveal nothing useful about a
/// 256-bit key, and make a collision between an installation's few keys
/// practically impossible.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(String);

impl KeyId {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn derive(key: &[u8; KEY_BYTES]) -> KeyId {
        let mut context = digest::Context::new(&digest::SHA256);
        context.update(KEY_ID_LABEL);
        context.update(key);
        KeyId(hex_lower(&context.finish().as_ref()[..KEY_ID_HASH_BYTES]))
    }

    /// Reads a key id from the stored form: 1–64 ASCII letters, digits,
    /// `-` or `_`.
    fn from_stored(bytes: &[u8]) -> Result<KeyId, VaultError> {
        let allowed = |b: &u8| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_';
        if bytes.is_empty() || bytes.len() > MAX_KEY_ID_BYTES || !bytes.iter().all(allowed) {
            return Err(VaultError::Malformed("bad key id"));
        }
        let text = std::str::from_utf8(bytes).map_err(|_| VaultError::Malformed("bad key id"))?;
        Ok(KeyId(text.to_owned()))
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({})", self.0)
    }
}

/// What a sealed value is bound to: the table, column and row it is stored
/// in. Sealing and opening must name the same three, so a ciphertext copied
/// into another row or column does not open.
///
/// The row id must be known before the value is sealed: use the row's
/// natural key or an id generated before the insert, not an
/// auto-incremented one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Aad {
    table: &'static str,
    column: &'static str,
    row_id: String,
}

/// Which layer an AAD is for, so the value's and the data key's associated
/// data always differ.
#[derive(Clone, Copy)]
enum Layer<'a> {
    /// The data key, wrapped under the master key with this id.
    WrappedKey(&'a KeyId),
    /// The value, encrypted under the data key.
    Value,
}

impl Aad {
    pub fn new(table: &'static str, column: &'static str, row_id: impl Into<String>) -> Aad {
        Aad {
            table,
            column,
            row_id: row_id.into(),
        }
    }

    /// The bytes authenticated with one layer:
    ///
    /// ```text
    /// "fenrun-vault" ‖ version (1 byte) ‖ layer (b'K' or b'V')
    ///   ‖ len ‖ table ‖ len ‖ column ‖ len ‖ row id [‖ len ‖ key id, layer K only]
    /// ```
    ///
    /// where each `len` is the next field's length in bytes as a big-endian
    /// u32, so no two different (table, column, row id) triples encode
    /// alike (`("ab", "c")` ≠ `("a", "bc")`). The wrapped key also binds the
    /// key id; the value does not, so [`Vault::reseal`] can change the key
    /// id without touching the value's ciphertext.
    fn bytes(&self, layer: Layer<'_>) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(
            AAD_LABEL.len() + 2 + 16 + self.table.len() + self.column.len() + self.row_id.len(),
        );
        bytes.extend_from_slice(AAD_LABEL);
        bytes.push(FORMAT_V1);
        let fields: &[&[u8]] = match layer {
            Layer::WrappedKey(key_id) => {
                bytes.push(b'K');
                &[
                    self.table.as_bytes(),
                    self.column.as_bytes(),
                    self.row_id.as_bytes(),
                    key_id.as_str().as_bytes(),
                ]
            }
            Layer::Value => {
                bytes.push(b'V');
                &[
                    self.table.as_bytes(),
                    self.column.as_bytes(),
                    self.row_id.as_bytes(),
                ]
            }
        };
        for field in fields {
            let len = u32::try_from(field.len()).expect("an AAD field is shorter than 4 GiB");
            bytes.extend_from_slice(&len.to_be_bytes());
            bytes.extend_from_slice(field);
        }
        bytes
    }
}

/// An encrypted credential as it is stored: see [`SealedValue::to_stored`]
/// for the byte layout. Not secret itself (it is what a dump may hold), but
/// `Debug` still shows only the key id and lengths.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedValue {
    key_id: KeyId,
    key_nonce: [u8; NONCE_LEN],
    wrapped_key: [u8; WRAPPED_KEY_BYTES],
    value_nonce: [u8; NONCE_LEN],
    /// The value's ciphertext followed by its 16-byte tag.
    ciphertext: Vec<u8>,
}

impl SealedValue {
    /// The master key this value's data key is wrapped under.
    pub fn key_id(&self) -> &KeyId {
        &self.key_id
    }

    /// The stored form, version 1: raw bytes for a `blob` (SQLite) or `bytea`
    /// (PostgreSQL) column; 90 bytes plus the key id plus the plaintext.
    ///
    /// ```text
    /// offset   length  field
    /// 0        1       format version, 0x01
    /// 1        1       n, the key id's length (1..=64)
    /// 2        n       key id, ASCII
    /// 2+n      12      nonce of the wrapped data key
    /// 14+n     48      data key under AES-256-GCM(master key): 32 bytes + 16-byte tag
    /// 62+n     12      nonce of the value
    /// 74+n     m+16    value under AES-256-GCM(data key): m bytes + 16-byte tag
    /// ```
    pub fn to_stored(&self) -> Vec<u8> {
        let id = self.key_id.as_str().as_bytes();
        let mut stored = Vec::with_capacity(
            2 + id.len() + 2 * NONCE_LEN + WRAPPED_KEY_BYTES + self.ciphertext.len(),
        );
        stored.push(FORMAT_V1);
        stored.push(u8::try_from(id.len()).expect("a key id is at most 64 bytes"));
        stored.extend_from_slice(id);
        stored.extend_from_slice(&self.key_nonce);
        stored.extend_from_slice(&self.wrapped_key);
        stored.extend_from_slice(&self.value_nonce);
        stored.extend_from_slice(&self.ciphertext);
        stored
    }

    /// Reads the stored form. Only the layout is checked here; whether the
    /// bytes are authentic is for [`Vault::open`] to find out.
    pub fn from_stored(stored: &[u8]) -> Result<SealedValue, VaultError> {
        let (&version, rest) = stored.split_first().ok_or(VaultError::Malformed("empty"))?;
        if version != FORMAT_V1 {
            return Err(VaultError::Malformed("unknown format version"));
        }
        let (&id_len, rest) = rest
            .split_first()
            .ok_or(VaultError::Malformed("truncated"))?;
        let id_len = usize::from(id_len);
        let fixed = id_len + 2 * NONCE_LEN + WRAPPED_KEY_BYTES + TAG_BYTES;
        if rest.len() < fixed {
            return Err(VaultError::Malformed("truncated"));
        }
        if rest.len() > fixed + MAX_PLAINTEXT_BYTES {
            return Err(VaultError::Malformed("too long"));
        }
        let (id, rest) = rest.split_at(id_len);
        let (key_nonce, rest) = rest.split_at(NONCE_LEN);
        let (wrapped_key, rest) = rest.split_at(WRAPPED_KEY_BYTES);
        let (value_nonce, ciphertext) = rest.split_at(NONCE_LEN);
        Ok(SealedValue {
            key_id: KeyId::from_stored(id)?,
            key_nonce: key_nonce.try_into().expect("split at NONCE_LEN"),
            wrapped_key: wrapped_key.try_into().expect("split at WRAPPED_KEY_BYTES"),
            value_nonce: value_nonce.try_into().expect("split at NONCE_LEN"),
            ciphertext: ciphertext.to_vec(),
        })
    }
}

impl fmt::Debug for SealedValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealedValue")
            .field("key_id", &self.key_id)
            .field("ciphertext_bytes", &self.ciphertext.len())
            .finish_non_exhaustive()
    }
}

/// Seals and opens credentials: the current master key seals, it and the
/// previous keys open. Build one at start-up and share it (`Arc<Vault>`).
pub struct Vault {
    current: MasterKey,
    /// Keys that sealed values not yet resealed; used only to open.
    previous: Vec<MasterKey>,
    rng: SystemRandom,
}

impl Vault {
    /// A vault sealing under `current` and also opening values sealed under
    /// `previous` (during a rotation). Previous keys with the current key's
    /// id, or repeated, are dropped.
    pub fn new(current: MasterKey, previous: Vec<MasterKey>) -> Vault {
        let mut kept: Vec<MasterKey> = Vec::with_capacity(previous.len());
        for key in previous {
            if key.id != current.id && kept.iter().all(|other| other.id != key.id) {
                kept.push(key);
            }
        }
        Vault {
            current,
            previous: kept,
            rng: SystemRandom::new(),
        }
    }

    /// The vault of this process as SPEC §5 configures it: the current key
    /// from [`MasterKey::load`], and the previous keys from
    /// [`previous_keys`] (set during a rotation, so values not yet resealed
    /// still open).
    pub fn from_sources(
        sources: &KeySources,
        database_url: &SecretString,
    ) -> Result<Vault, VaultError> {
        Ok(Vault::new(
            MasterKey::load(sources, database_url)?,
            previous_keys(sources)?,
        ))
    }

    /// A 32-byte secret derived from the current master key with HKDF-SHA256
    /// under `label`: a key that must stay as secret as the master key and
    /// need no file of its own (the certificate signing key's seed). A new
    /// master key derives a new secret.
    pub fn derive_secret(
        &self,
        label: &'static str,
    ) -> Result<SecretBox<[u8; KEY_BYTES]>, VaultError> {
        let salt = ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, b"fenrun-vault-derivation-v1");
        let pseudo_random = salt.extract(self.current.bytes.expose_secret());
        let info = [label.as_bytes()];
        let okm = pseudo_random
            .expand(&info, ring::hkdf::HKDF_SHA256)
            .map_err(|_| VaultError::Derivation)?;
        let mut out = Box::new([0u8; KEY_BYTES]);
        okm.fill(&mut out[..]).map_err(|_| VaultError::Derivation)?;
        Ok(SecretBox::new(out))
    }

    /// The ids of the previous keys this vault opens with.
    pub fn previous_key_ids(&self) -> Vec<&KeyId> {
        self.previous.iter().map(|key| &key.id).collect()
    }

    /// The id of the key new values are sealed under.
    pub fn current_key_id(&self) -> &KeyId {
        &self.current.id
    }

    /// Whether `sealed` is wrapped under a key other than the current one,
    /// i.e. whether `keys rotate` still has to [`Vault::reseal`] it.
    pub fn needs_reseal(&self, sealed: &SealedValue) -> bool {
        sealed.key_id != self.current.id
    }

    /// Encrypts `plaintext` for the row and column named by `aad` under a
    /// fresh data key, wrapped under the current master key.
    pub fn seal(
        &self,
        plaintext: &impl ExposeSecret<str>,
        aad: &Aad,
    ) -> Result<SealedValue, VaultError> {
        let plaintext = plaintext.expose_secret().as_bytes();
        if plaintext.len() > MAX_PLAINTEXT_BYTES {
            return Err(VaultError::TooLong);
        }
        let mut data_key = Zeroizing::new([0u8; KEY_BYTES]);
        self.rng
            .fill(data_key.as_mut_slice())
            .map_err(|_| VaultError::Random)?;
        let value_nonce = self.nonce()?;
        // Room for the tag up front: growing the vector would move the
        // plaintext and leave the old copy behind, unzeroed.
        let mut buffer = Zeroizing::new(Vec::with_capacity(plaintext.len() + TAG_BYTES));
        buffer.extend_from_slice(plaintext);
        aead_key(&data_key)
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(value_nonce),
                aead::Aad::from(aad.bytes(Layer::Value)),
                &mut *buffer,
            )
            .map_err(|_| VaultError::TooLong)?;
        // The buffer now holds ciphertext, which is not secret.
        let ciphertext = std::mem::take(&mut *buffer);
        let (key_nonce, wrapped_key) = self.wrap(&data_key, aad)?;
        Ok(SealedValue {
            key_id: self.current.id.clone(),
            key_nonce,
            wrapped_key,
            value_nonce,
            ciphertext,
        })
    }

    /// Decrypts a value sealed for the row and column named by `aad`.
    pub fn open(&self, sealed: &SealedValue, aad: &Aad) -> Result<SecretString, VaultError> {
        let data_key = self.unwrap(sealed, aad)?;
        let mut buffer = Zeroizing::new(sealed.ciphertext.clone());
        let plaintext = aead_key(&data_key)
            .open_in_place(
                Nonce::assume_unique_for_key(sealed.value_nonce),
                aead::Aad::from(aad.bytes(Layer::Value)),
                buffer.as_mut_slice(),
            )
            .map_err(|_| VaultError::Authentication)?;
        // Only this code seals, and it seals `str`s; an authentic value that
        // is not UTF-8 would be a bug, reported without its bytes.
        let text =
            std::str::from_utf8(plaintext).map_err(|_| VaultError::Malformed("not UTF-8"))?;
        Ok(SecretString::from(text))
    }

    /// The same value with its data key re-wrapped under the current master
    /// key: what `fenrun keys rotate` does to each row, after which the old
    /// key can be retired.
    ///
    /// Only the data key is re-encrypted; the value's nonce and ciphertext
    /// are kept. Retiring a master key only requires that no value depend on
    /// it, and each data key is unique to its value, so re-wrapping achieves
    /// that while the credential itself never has to be re-encrypted (and a
    /// full re-encryption would not protect a value from anyone who already
    /// held the old key and the old dump, since it is the same credential).
    /// The value is still decrypted and authenticated once, into a buffer
    /// wiped straight after, so a rotation reports a corrupt row instead of
    /// re-wrapping it. A value already under the current key is re-wrapped
    /// too (fresh nonce), which is harmless; callers skip those with
    /// [`Vault::needs_reseal`].
    pub fn reseal(&self, sealed: &SealedValue, aad: &Aad) -> Result<SealedValue, VaultError> {
        let data_key = self.unwrap(sealed, aad)?;
        let mut buffer = Zeroizing::new(sealed.ciphertext.clone());
        aead_key(&data_key)
            .open_in_place(
                Nonce::assume_unique_for_key(sealed.value_nonce),
                aead::Aad::from(aad.bytes(Layer::Value)),
                buffer.as_mut_slice(),
            )
            .map_err(|_| VaultError::Authentication)?;
        drop(buffer);
        let (key_nonce, wrapped_key) = self.wrap(&data_key, aad)?;
        Ok(SealedValue {
            key_id: self.current.id.clone(),
            key_nonce,
            wrapped_key,
            value_nonce: sealed.value_nonce,
            ciphertext: sealed.ciphertext.clone(),
        })
    }

    /// Encrypts a data key under the current master key.
    fn wrap(
        &self,
        data_key: &[u8; KEY_BYTES],
        aad: &Aad,
    ) -> Result<([u8; NONCE_LEN], [u8; WRAPPED_KEY_BYTES]), VaultError> {
        let nonce = self.nonce()?;
        let mut buffer = Zeroizing::new(Vec::with_capacity(WRAPPED_KEY_BYTES));
        buffer.extend_from_slice(data_key);
        self.current
            .aead_key()
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                aead::Aad::from(aad.bytes(Layer::WrappedKey(&self.current.id))),
                &mut *buffer,
            )
            .expect("AES-GCM seals a 32-byte message");
        let wrapped = buffer
            .as_slice()
            .try_into()
            .expect("a wrapped data key is 32 bytes plus a 16-byte tag");
        Ok((nonce, wrapped))
    }

    /// Decrypts a value's data key with the master key it names.
    fn unwrap(
        &self,
        sealed: &SealedValue,
        aad: &Aad,
    ) -> Result<Zeroizing<[u8; KEY_BYTES]>, VaultError> {
        let master = std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|key| key.id == sealed.key_id)
            .ok_or_else(|| VaultError::UnknownKey(sealed.key_id.clone()))?;
        let mut buffer = Zeroizing::new(sealed.wrapped_key);
        let opened = master
            .aead_key()
            .open_in_place(
                Nonce::assume_unique_for_key(sealed.key_nonce),
                aead::Aad::from(aad.bytes(Layer::WrappedKey(&sealed.key_id))),
                buffer.as_mut_slice(),
            )
            .map_err(|_| VaultError::Authentication)?;
        let mut data_key = Zeroizing::new([0u8; KEY_BYTES]);
        data_key.copy_from_slice(opened);
        Ok(data_key)
    }

    fn nonce(&self) -> Result<[u8; NONCE_LEN], VaultError> {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).map_err(|_| VaultError::Random)?;
        Ok(nonce)
    }
}

impl fmt::Debug for Vault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let previous: Vec<&KeyId> = self.previous.iter().map(|key| &key.id).collect();
        f.debug_struct("Vault")
            .field("current", &self.current.id)
            .field("previous", &previous)
            .finish()
    }
}

fn aead_key(bytes: &[u8; KEY_BYTES]) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, bytes).expect("AES-256-GCM takes a 32-byte key"))
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::path::Path;

    use base64::Engine as _;

    use super::keys::*;
    use super::*;

    fn key(byte: u8) -> MasterKey {
        MasterKey::from_bytes([byte; KEY_BYTES])
    }

    #[test]
    fn a_derived_secret_is_stable_per_key_and_label_and_differs_otherwise() {
        let vault = Vault::new(key(1), Vec::new());
        let again = Vault::new(key(1), vec![key(2)]);
        let other = Vault::new(key(2), Vec::new());
        let secret = |vault: &Vault, label| *vault.derive_secret(label).unwrap().expose_secret();
        assert_eq!(secret(&vault, "a"), secret(&again, "a"));
        assert_ne!(secret(&vault, "a"), secret(&vault, "b"));
        assert_ne!(secret(&vault, "a"), secret(&other, "a"));
        assert_ne!(secret(&vault, "a"), [1u8; KEY_BYTES]);
    }

    fn card_of(row: &str) -> Aad {
        Aad::new("payout_accounts", "card_number", row)
    }

    fn secret(text: &str) -> SecretString {
        SecretString::from(text)
    }

    fn sqlite_url(path: &Path) -> SecretString {
        SecretString::from(format!("sqlite://{}", path.display()))
    }

    #[test]
    fn a_sealed_value_opens_to_its_plaintext_through_the_stored_form() {
        let vault = Vault::new(key(1), vec![]);
        for plaintext in ["6222021234567894", "张三", ""] {
            let sealed = vault.seal(&secret(plaintext), &card_of("d-1")).unwrap();
            let stored = sealed.to_stored();
            assert_eq!(
                stored.len(),
                90 + vault.current_key_id().as_str().len() + plaintext.len()
            );
            let read = SealedValue::from_stored(&stored).unwrap();
            assert_eq!(read, sealed);
            let opened = vault.open(&read, &card_of("d-1")).unwrap();
            assert_eq!(opened.expose_secret(), plaintext);
        }
    }

    #[test]
    fn identity_types_can_be_sealed_directly() {
        let vault = Vault::new(key(1), vec![]);
        let card = crate::domain::identity::BankCardNumber::parse("6222021234567894").unwrap();
        let sealed = vault.seal(&card, &card_of("d-1")).unwrap();
        let opened = vault.open(&sealed, &card_of("d-1")).unwrap();
        assert_eq!(opened.expose_secret(), "6222021234567894");
    }

    #[test]
    fn a_sealed_value_does_not_open_for_another_row_or_column() {
        let vault = Vault::new(key(1), vec![]);
        let sealed = vault
            .seal(&secret("6222021234567894"), &card_of("d-1"))
            .unwrap();
        for other in [
            card_of("d-2"),
            Aad::new("payout_accounts", "real_name", "d-1"),
            Aad::new("distributors", "card_number", "d-1"),
        ] {
            assert!(matches!(
                vault.open(&sealed, &other),
                Err(VaultError::Authentication)
            ));
        }
    }

    #[test]
    fn aad_fields_are_length_prefixed_so_shifting_a_boundary_does_not_open() {
        let vault = Vault::new(key(1), vec![]);
        let sealed = vault.seal(&secret("x"), &Aad::new("ab", "c", "d")).unwrap();
        assert!(vault.open(&sealed, &Aad::new("a", "bc", "d")).is_err());
        assert!(vault.open(&sealed, &Aad::new("ab", "", "cd")).is_err());
        assert_ne!(
            Aad::new("ab", "c", "d").bytes(Layer::Value),
            Aad::new("a", "bc", "d").bytes(Layer::Value)
        );
    }

    #[test]
    fn changing_any_byte_of_the_stored_form_makes_it_fail() {
        let vault = Vault::new(key(1), vec![]);
        let stored = vault
            .seal(&secret("110101199003070011"), &card_of("d-1"))
            .unwrap()
            .to_stored();
        for index in 0..stored.len() {
            for flip in [0x01u8, 0x80] {
                let mut altered = stored.clone();
                altered[index] ^= flip;
                let opened = SealedValue::from_stored(&altered)
                    .and_then(|sealed| vault.open(&sealed, &card_of("d-1")));
                assert!(opened.is_err(), "byte {index} ^ {flip:#x} went unnoticed");
            }
        }
        let mut longer = stored.clone();
        longer.push(0);
        let opened =
            SealedValue::from_stored(&longer).and_then(|s| vault.open(&s, &card_of("d-1")));
        assert!(opened.is_err());
        for cut in 0..stored.len() {
            let opened = SealedValue::from_stored(&stored[..cut])
                .and_then(|s| vault.open(&s, &card_of("d-1")));
            assert!(opened.is_err(), "cut at {cut} went unnoticed");
        }
    }

    #[test]
    fn an_unknown_format_version_is_refused() {
        let vault = Vault::new(key(1), vec![]);
        let mut stored = vault
            .seal(&secret("x"), &card_of("d-1"))
            .unwrap()
            .to_stored();
        stored[0] = 2;
        assert!(matches!(
            SealedValue::from_stored(&stored),
            Err(VaultError::Malformed(_))
        ));
    }

    #[test]
    fn sealing_the_same_plaintext_twice_gives_different_bytes() {
        let vault = Vault::new(key(1), vec![]);
        let first = vault.seal(&secret("13812345678"), &card_of("d-1")).unwrap();
        let second = vault.seal(&secret("13812345678"), &card_of("d-1")).unwrap();
        assert_ne!(first.to_stored(), second.to_stored());
        assert_ne!(first.ciphertext, second.ciphertext);
        assert_ne!(first.wrapped_key, second.wrapped_key);
    }

    #[test]
    fn a_resealed_value_opens_with_only_the_new_key_and_the_old_form_does_not() {
        let old_vault = Vault::new(key(1), vec![]);
        let sealed = old_vault.seal(&secret("张三"), &card_of("d-1")).unwrap();

        let rotating = Vault::new(key(2), vec![key(1)]);
        assert!(rotating.needs_reseal(&sealed));
        let resealed = rotating.reseal(&sealed, &card_of("d-1")).unwrap();
        assert!(!rotating.needs_reseal(&resealed));
        assert_eq!(resealed.key_id(), key(2).id());
        // Only the data key was re-wrapped; the value's ciphertext is the same.
        assert_eq!(resealed.ciphertext, sealed.ciphertext);
        assert_eq!(resealed.value_nonce, sealed.value_nonce);
        assert_ne!(resealed.wrapped_key, sealed.wrapped_key);

        let new_only = Vault::new(key(2), vec![]);
        let opened = new_only.open(&resealed, &card_of("d-1")).unwrap();
        assert_eq!(opened.expose_secret(), "张三");
        match new_only.open(&sealed, &card_of("d-1")) {
            Err(VaultError::UnknownKey(id)) => assert_eq!(&id, key(1).id()),
            other => panic!("expected UnknownKey, got {other:?}"),
        }
    }

    #[test]
    fn reseal_refuses_a_value_for_another_row() {
        let old_vault = Vault::new(key(1), vec![]);
        let sealed = old_vault.seal(&secret("张三"), &card_of("d-1")).unwrap();
        let rotating = Vault::new(key(2), vec![key(1)]);
        assert!(matches!(
            rotating.reseal(&sealed, &card_of("d-2")),
            Err(VaultError::Authentication)
        ));
    }

    #[test]
    fn a_key_id_stored_for_another_key_does_not_open() {
        // Claiming the value was wrapped under key 2 makes the vault try key
        // 2, which cannot unwrap what key 1 wrapped.
        let vault = Vault::new(key(2), vec![key(1)]);
        let sealed = Vault::new(key(1), vec![])
            .seal(&secret("x"), &card_of("d-1"))
            .unwrap();
        let relabelled = SealedValue {
            key_id: key(2).id().clone(),
            ..sealed
        };
        assert!(matches!(
            vault.open(&relabelled, &card_of("d-1")),
            Err(VaultError::Authentication)
        ));
    }

    #[test]
    fn key_ids_are_derived_from_the_key_and_tell_keys_apart() {
        assert_eq!(key(1).id(), key(1).id());
        assert_ne!(key(1).id(), key(2).id());
        assert_eq!(key(1).id().as_str().len(), 16);
        assert!(
            key(1)
                .id()
                .as_str()
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        let generated = MasterKey::generate().unwrap();
        assert_ne!(generated.id(), MasterKey::generate().unwrap().id());
    }

    #[test]
    fn a_vault_can_be_shared_between_tasks() {
        fn shareable<T: Send + Sync>() {}
        shareable::<Vault>();
        shareable::<SealedValue>();
    }

    #[test]
    fn a_vault_drops_previous_keys_that_repeat_the_current_or_each_other() {
        let vault = Vault::new(key(1), vec![key(1), key(2), key(2)]);
        assert_eq!(vault.previous.len(), 1);
        assert_eq!(vault.previous[0].id(), key(2).id());
    }

    #[test]
    fn a_key_file_in_hex_or_base64_loads_the_same_key() {
        let dir = tempfile::tempdir().unwrap();
        let hex_file = dir.path().join("hex.key");
        fs::write(&hex_file, format!("{}\n", "AB".repeat(32))).unwrap();
        let base64_file = dir.path().join("base64.key");
        let encoded = base64::engine::general_purpose::STANDARD.encode([0xab; 32]);
        fs::write(&base64_file, format!("  {encoded}\n")).unwrap();

        let from_hex = MasterKey::from_file(&hex_file).unwrap();
        let from_base64 = MasterKey::from_file(&base64_file).unwrap();
        assert_eq!(from_hex.id(), key(0xab).id());
        assert_eq!(from_base64.id(), key(0xab).id());
    }

    #[test]
    fn a_key_file_of_the_wrong_length_or_alphabet_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let short_base64 = base64::engine::general_purpose::STANDARD.encode([1u8; 31]);
        for (name, contents) in [
            ("short-hex", "ab".repeat(31)),
            ("long-hex", "ab".repeat(33)),
            ("not-hex", "zz".repeat(32)),
            ("short-base64", short_base64),
            ("empty", String::new()),
            ("huge", "a".repeat(4096)),
        ] {
            let path = dir.path().join(name);
            fs::write(&path, &contents).unwrap();
            match MasterKey::from_file(&path) {
                Err(VaultError::MalformedKey { origin }) => {
                    assert!(origin.contains(name), "{origin}");
                }
                other => panic!("{name}: expected MalformedKey, got {other:?}"),
            }
        }
        let missing = dir.path().join("missing");
        assert!(matches!(
            MasterKey::from_file(&missing),
            Err(VaultError::KeyFile { .. })
        ));
    }

    #[test]
    fn a_malformed_key_error_never_shows_the_key() {
        let almost = "0123456789abcdef".repeat(4) + "0";
        let error = MasterKey::parse(&secret(&almost), MASTER_KEY_ENV).unwrap_err();
        let shown = format!("{error} {error:?}");
        assert!(!shown.contains("0123456789abcdef"), "{shown}");
        assert!(shown.contains(MASTER_KEY_ENV));
    }

    #[test]
    fn either_key_variable_gives_the_key_and_both_together_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        fs::write(&path, "cd".repeat(32)).unwrap();
        let database = sqlite_url(&dir.path().join("fenrun.db"));

        let from_file = KeySources {
            key_file: Some(path.clone()),
            key: None,
            ..KeySources::default()
        };
        assert_eq!(
            MasterKey::load(&from_file, &database).unwrap().id(),
            key(0xcd).id()
        );
        let from_value = KeySources {
            key_file: None,
            key: Some(secret(&"ef".repeat(32))),
            ..KeySources::default()
        };
        assert_eq!(
            MasterKey::load(&from_value, &database).unwrap().id(),
            key(0xef).id()
        );
        let both = KeySources {
            key_file: Some(path),
            key: Some(secret(&"ef".repeat(32))),
            ..KeySources::default()
        };
        assert!(matches!(
            MasterKey::load(&both, &database),
            Err(VaultError::AmbiguousKeySource)
        ));
        // An explicit key means no development key file is ever created.
        assert!(!dir.path().join(DEV_KEY_FILE_NAME).exists());
    }

    #[test]
    fn previous_keys_are_a_list_separated_by_commas_or_whitespace() {
        let text = format!(
            "{}, {}\n{}\n",
            "01".repeat(32),
            "02".repeat(32),
            "03".repeat(32)
        );
        let keys = parse_key_list(&text, PREVIOUS_KEYS_ENV).unwrap();
        let ids: Vec<&KeyId> = keys.iter().map(MasterKey::id).collect();
        assert_eq!(ids, vec![key(1).id(), key(2).id(), key(3).id()]);
        assert!(parse_key_list("", PREVIOUS_KEYS_ENV).unwrap().is_empty());
        match parse_key_list(&format!("{},zz", "01".repeat(32)), PREVIOUS_KEYS_ENV) {
            Err(VaultError::MalformedKey { origin }) => assert_eq!(origin, PREVIOUS_KEYS_ENV),
            other => panic!("expected MalformedKey, got {other:?}"),
        }
        let too_many = vec!["01".repeat(32); MAX_PREVIOUS_KEYS + 1].join(",");
        assert!(matches!(
            parse_key_list(&too_many, PREVIOUS_KEYS_ENV),
            Err(VaultError::TooManyPreviousKeys)
        ));
    }

    #[test]
    fn postgresql_without_a_master_key_is_refused() {
        let url = secret("postgres://fenrun:s3cret@db/fenrun");
        let error = MasterKey::load(&KeySources::default(), &url).unwrap_err();
        assert!(matches!(error, VaultError::MissingMasterKey));
        assert!(error.to_string().contains(MASTER_KEY_FILE_ENV));
        assert!(!error.to_string().contains("s3cret"));
    }

    #[test]
    fn the_development_key_is_created_beside_the_sqlite_database_with_mode_0600() {
        use std::os::unix::fs::PermissionsExt;

        let dir = tempfile::tempdir().unwrap();
        let database = sqlite_url(&dir.path().join("fenrun.db"));
        let created = MasterKey::load(&KeySources::default(), &database).unwrap();

        let path = dir.path().join(DEV_KEY_FILE_NAME);
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let contents = fs::read_to_string(&path).unwrap();
        assert_eq!(contents.trim().len(), 64);
        // Started again, it finds the same key rather than making another.
        let reloaded = MasterKey::load(&KeySources::default(), &database).unwrap();
        assert_eq!(reloaded.id(), created.id());
        // Nothing else was left in the directory (no temporary file).
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn an_in_memory_sqlite_database_gets_a_throwaway_key_and_no_file() {
        for url in [
            "sqlite::memory:",
            "sqlite://:memory:",
            "sqlite://?mode=memory",
        ] {
            let key = MasterKey::load(&KeySources::default(), &secret(url)).unwrap();
            assert_eq!(key.id().as_str().len(), 16);
        }
        assert_eq!(
            sqlite_database_file("sqlite://fenrun.db?mode=rwc"),
            Some(PathBuf::from("fenrun.db"))
        );
        assert_eq!(
            sqlite_database_file("sqlite:///var/lib/fenrun/fenrun.db"),
            Some(PathBuf::from("/var/lib/fenrun/fenrun.db"))
        );
    }

    #[test]
    fn an_over_long_plaintext_is_refused() {
        let vault = Vault::new(key(1), vec![]);
        let long = "x".repeat(MAX_PLAINTEXT_BYTES + 1);
        assert!(matches!(
            vault.seal(&secret(&long), &card_of("d-1")),
            Err(VaultError::TooLong)
        ));
        let longest = "x".repeat(MAX_PLAINTEXT_BYTES);
        let sealed = vault.seal(&secret(&longest), &card_of("d-1")).unwrap();
        let read = SealedValue::from_stored(&sealed.to_stored()).unwrap();
        assert_eq!(
            vault.open(&read, &card_of("d-1")).unwrap().expose_secret(),
            longest
        );
    }

    #[test]
    fn debug_output_shows_no_key_or_plaintext_bytes() {
        let master = key(0xab);
        let printed_key = format!("{master:?}");
        let vault = Vault::new(key(0xab), vec![key(0xcd)]);
        let sealed = vault
            .seal(&secret("6222021234567894"), &card_of("d-1"))
            .unwrap();
        let printed = format!("{printed_key} {vault:?} {sealed:?}");
        // Neither the keys (hex or decimal bytes) nor the plaintext.
        for leak in ["abab", "cdcd", "171", "205", "6222", "7894"] {
            assert!(!printed.contains(leak), "{printed} shows {leak}");
        }
        assert!(printed.contains(master.id().as_str()));
        let sources = KeySources {
            key_file: None,
            key: Some(secret(&"ab".repeat(32))),
            ..KeySources::default()
        };
        assert!(!format!("{sources:?}").contains("abab"));
    }
}
