//! The master key: what it is ([`MasterKey`], written as hex or base64 and
//! named by its [`KeyId`]) and where it comes from ([`KeySources`] from the
//! settings, a key file, or the development key file beside a SQLite
//! database), with the previous keys of a rotation.

use std::fmt;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use ring::aead::LessSafeKey;
use ring::rand::{SecureRandom, SystemRandom};
use secrecy::zeroize::Zeroizing;
use secrecy::{ExposeSecret, SecretBox, SecretString};

use super::{
    DEV_KEY_FILE_NAME, KEY_BYTES, KeyId, MASTER_KEY_ENV, MASTER_KEY_FILE_ENV, MAX_KEY_FILE_BYTES,
    MAX_PREVIOUS_KEYS, PREVIOUS_KEYS_ENV, VaultError, aead_key,
};
use crate::domain::digest::{hex_lower, unhex};
use crate::store::{BackendKind, backend_of};

/// Where the master keys may come from: the environment variables of
/// SPEC §5, which the settings loader reads (`config::Settings::load`) so
/// that building the application reads no environment, and a test can hand
/// them over. Never in a settings file: the key must not sit next to the
/// database URL. `Debug` shows no key.
#[derive(Debug, Clone, Default)]
pub struct KeySources {
    /// `FENRUN_MASTER_KEY_FILE`: a file holding the key.
    pub key_file: Option<PathBuf>,
    /// `FENRUN_MASTER_KEY`: the key itself.
    pub key: Option<SecretString>,
    /// `FENRUN_MASTER_KEY_PREVIOUS_FILE`: previous keys, one a line.
    pub previous_keys_file: Option<PathBuf>,
    /// `FENRUN_MASTER_KEY_PREVIOUS`: previous keys separated by commas or
    /// whitespace.
    pub previous_keys: Option<SecretString>,
}

/// The previous master keys named by `FENRUN_MASTER_KEY_PREVIOUS_FILE` (one
/// key a line) or `FENRUN_MASTER_KEY_PREVIOUS` (keys separated by commas or
/// whitespace); none when neither is set. Each key is written as
/// [`MasterKey`] describes.
pub fn previous_keys(sources: &KeySources) -> Result<Vec<MasterKey>, VaultError> {
    match (sources.previous_keys_file.clone(), &sources.previous_keys) {
        (Some(_), Some(_)) => Err(VaultError::AmbiguousPreviousKeySource),
        (None, None) => Ok(Vec::new()),
        (None, Some(text)) => parse_key_list(text.expose_secret(), PREVIOUS_KEYS_ENV),
        (Some(path), None) => {
            let file_error = |source| VaultError::KeyFile {
                path: path.clone(),
                source,
            };
            let file = fs::File::open(&path).map_err(file_error)?;
            warn_if_readable_by_others(&file, &path);
            let limit = MAX_KEY_FILE_BYTES * MAX_PREVIOUS_KEYS as u64;
            let mut text = Zeroizing::new(String::new());
            file.take(limit + 1)
                .read_to_string(&mut text)
                .map_err(file_error)?;
            let origin = format!("previous master key file {}", path.display());
            if text.len() as u64 > limit {
                return Err(VaultError::MalformedKey { origin });
            }
            parse_key_list(&text, &origin)
        }
    }
}

/// Keys separated by commas or whitespace; `origin` names them in errors.
pub(super) fn parse_key_list(text: &str, origin: &str) -> Result<Vec<MasterKey>, VaultError> {
    let keys: Vec<MasterKey> = text
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|key| !key.is_empty())
        .map(|key| MasterKey::parse_text(key, || origin.to_owned()))
        .collect::<Result<_, _>>()?;
    if keys.len() > MAX_PREVIOUS_KEYS {
        return Err(VaultError::TooManyPreviousKeys);
    }
    Ok(keys)
}

/// The 256-bit key that wraps every data key, with its [`KeyId`].
///
/// A key is written down (in `FENRUN_MASTER_KEY`, a key file or the
/// development key file) as either
/// - 64 hexadecimal digits, upper or lower case (`openssl rand -hex 32`), or
/// - the standard base64 (RFC 4648 §4, with `=` padding) of 32 bytes, 44
///   characters (`openssl rand -base64 32`);
///
/// with any surrounding whitespace, such as a trailing newline, ignored. The
/// two forms cannot be confused: 64 base64 characters would be 48 bytes.
/// Development key files are written in hex.
pub struct MasterKey {
    pub(super) id: KeyId,
    pub(super) bytes: SecretBox<[u8; KEY_BYTES]>,
}

impl MasterKey {
    /// Loads the master key from `sources`:
    /// - a key file → the key in it (a file readable by group or others is
    ///   used, with a warning);
    /// - a key value → that key;
    /// - both → an error, rather than guessing which one the operator meant;
    /// - neither, with a SQLite database → the development key file
    ///   `fenrun-dev-master.key` in the database's directory, created (mode
    ///   0600) if missing, with a loud warning on every start; for an
    ///   in-memory database a throwaway key that lives as long as the
    ///   process, which is as long as the data does;
    /// - neither, with PostgreSQL → an error: a shared database must not
    ///   depend on a file on one machine.
    pub fn load(
        sources: &KeySources,
        database_url: &SecretString,
    ) -> Result<MasterKey, VaultError> {
        match (&sources.key_file, &sources.key) {
            (Some(_), Some(_)) => Err(VaultError::AmbiguousKeySource),
            (Some(path), None) => MasterKey::from_file(path),
            (None, Some(text)) => MasterKey::parse(text, MASTER_KEY_ENV),
            (None, None) => match backend_of(database_url.expose_secret()) {
                Some(BackendKind::Sqlite) => development_key(database_url.expose_secret()),
                Some(BackendKind::Postgres) => Err(VaultError::MissingMasterKey),
                None => Err(VaultError::UnknownDatabase),
            },
        }
    }

    /// Reads a key file (hex or base64, see the type's doc).
    pub fn from_file(path: &Path) -> Result<MasterKey, VaultError> {
        let file_error = |source| VaultError::KeyFile {
            path: path.to_path_buf(),
            source,
        };
        let file = fs::File::open(path).map_err(file_error)?;
        warn_if_readable_by_others(&file, path);
        let mut text = Zeroizing::new(String::new());
        file.take(MAX_KEY_FILE_BYTES + 1)
            .read_to_string(&mut text)
            .map_err(file_error)?;
        let origin = || format!("master key file {}", path.display());
        if text.len() as u64 > MAX_KEY_FILE_BYTES {
            return Err(VaultError::MalformedKey { origin: origin() });
        }
        MasterKey::parse_text(&text, origin)
    }

    /// Parses a key written as hex or base64 (see the type's doc); `origin`
    /// names where it came from in the error.
    pub fn parse(text: &SecretString, origin: &str) -> Result<MasterKey, VaultError> {
        MasterKey::parse_text(text.expose_secret(), || origin.to_owned())
    }

    pub(super) fn parse_text(
        text: &str,
        origin: impl Fn() -> String,
    ) -> Result<MasterKey, VaultError> {
        let text = text.trim();
        let decoded: Zeroizing<Vec<u8>> = if text.len() == 2 * KEY_BYTES {
            Zeroizing::new(
                unhex(text).ok_or_else(|| VaultError::MalformedKey { origin: origin() })?,
            )
        } else {
            Zeroizing::new(
                base64::engine::general_purpose::STANDARD
                    .decode(text)
                    .map_err(|_| VaultError::MalformedKey { origin: origin() })?,
            )
        };
        if decoded.len() != KEY_BYTES {
            return Err(VaultError::MalformedKey { origin: origin() });
        }
        let bytes = SecretBox::init_with_mut(|key: &mut [u8; KEY_BYTES]| {
            key.copy_from_slice(&decoded);
        });
        Ok(MasterKey::from_secret(bytes))
    }

    /// A key from raw bytes (tests, or a future KMS that hands out bytes).
    pub fn from_bytes(bytes: [u8; KEY_BYTES]) -> MasterKey {
        let bytes = Zeroizing::new(bytes);
        MasterKey::from_secret(SecretBox::init_with_mut(|key: &mut [u8; KEY_BYTES]| {
            key.copy_from_slice(bytes.as_slice());
        }))
    }

    /// A new random key from the system's secure random number generator.
    pub fn generate() -> Result<MasterKey, VaultError> {
        let rng = SystemRandom::new();
        let mut filled = Ok(());
        let bytes = SecretBox::init_with_mut(|key: &mut [u8; KEY_BYTES]| {
            filled = rng.fill(key);
        });
        filled.map_err(|_| VaultError::Random)?;
        Ok(MasterKey::from_secret(bytes))
    }

    pub(super) fn from_secret(bytes: SecretBox<[u8; KEY_BYTES]>) -> MasterKey {
        MasterKey {
            id: KeyId::derive(bytes.expose_secret()),
            bytes,
        }
    }

    pub fn id(&self) -> &KeyId {
        &self.id
    }

    /// The key written as 64 hex digits plus a newline: the key-file form.
    pub(super) fn to_hex_line(&self) -> Zeroizing<String> {
        let mut line = Zeroizing::new(hex_lower(self.bytes.expose_secret()));
        line.push('\n');
        line
    }

    pub(super) fn aead_key(&self) -> LessSafeKey {
        aead_key(self.bytes.expose_secret())
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MasterKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// The key of SPEC §5's development fallback for a SQLite `database_url`.
pub(super) fn development_key(database_url: &str) -> Result<MasterKey, VaultError> {
    let Some(database) = sqlite_database_file(database_url) else {
        let key = MasterKey::generate()?;
        tracing::warn!(
            key_id = %key.id(),
            "NO MASTER KEY CONFIGURED: the in-memory database's payout credentials are encrypted \
             with a throwaway key that dies with this process. Set {MASTER_KEY_FILE_ENV} for any \
             database that is kept."
        );
        return Ok(key);
    };
    let directory = match database.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let path = directory.join(DEV_KEY_FILE_NAME);
    let (key, created) = match MasterKey::from_file(&path) {
        Ok(key) => (key, false),
        Err(VaultError::KeyFile { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
            create_key_file(&path)?
        }
        Err(error) => return Err(error),
    };
    tracing::warn!(
        path = %path.display(),
        key_id = %key.id(),
        created,
        "DEVELOPMENT MASTER KEY IN USE: no {MASTER_KEY_FILE_ENV} or {MASTER_KEY_ENV} is set, so \
         payout credentials are encrypted with a key kept in a file beside the SQLite database; \
         anyone who can read both can read every credential. Never run real payouts like this: \
         set {MASTER_KEY_FILE_ENV} to a key file kept apart from the database and its backups."
    );
    Ok(key)
}

/// Creates the development key file at `path`, mode 0600. The key is written
/// to a temporary file in the same directory and then hard-linked into
/// place, which fails if the file appeared meanwhile: two processes starting
/// together (`serve` and `worker`) both end up with the one key that won,
/// and neither ever reads a half-written file. Returns the key and whether
/// this call created it.
pub(super) fn create_key_file(path: &Path) -> Result<(MasterKey, bool), VaultError> {
    let file_error = |source| VaultError::KeyFile {
        path: path.to_path_buf(),
        source,
    };
    let key = MasterKey::generate()?;
    let mut suffix = [0u8; 8];
    SystemRandom::new()
        .fill(&mut suffix)
        .map_err(|_| VaultError::Random)?;
    let temporary = path.with_extension(format!("{}.tmp", hex_lower(&suffix)));
    let written = write_private_file(&temporary, key.to_hex_line().as_bytes())
        .and_then(|()| fs::hard_link(&temporary, path));
    // The temporary name is ours alone; remove it whatever happened.
    let _ = fs::remove_file(&temporary);
    match written {
        Ok(()) => Ok((key, true)),
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
            Ok((MasterKey::from_file(path)?, false))
        }
        Err(error) => Err(file_error(error)),
    }
}

/// Writes `contents` to a new file that only its owner may read or write.
pub(super) fn write_private_file(path: &Path, contents: &[u8]) -> io::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        options.mode(0o600);
        let mut file = options.open(path)?;
        // The umask can only take bits away from 0600; set it exactly anyway.
        file.set_permissions(fs::Permissions::from_mode(0o600))?;
        file.write_all(contents)?;
        file.sync_all()
    }
    #[cfg(not(unix))]
    {
        let mut file = options.open(path)?;
        file.write_all(contents)?;
        file.sync_all()
    }
}

#[cfg(unix)]
pub(super) fn warn_if_readable_by_others(file: &fs::File, path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(metadata) = file.metadata() {
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(
                path = %path.display(),
                mode = format_args!("{mode:o}"),
                "the master key file may be read by other users; chmod 600 it"
            );
        }
    }
}

#[cfg(not(unix))]
pub(super) fn warn_if_readable_by_others(_file: &fs::File, _path: &Path) {}

/// The database file a `sqlite:` URL names, read the way sqlx reads it
/// (`sqlite://` or `sqlite:` prefix, parameters after `?`), or `None` for an
/// in-memory or temporary database (`sqlite::memory:`, `mode=memory`, an
/// empty path). Percent-escapes are not decoded: a database whose path needs
/// them gets its development key beside the path as written.
pub(super) fn sqlite_database_file(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    let (path, params) = rest.split_once('?').unwrap_or((rest, ""));
    let in_memory = path.is_empty()
        || path == ":memory:"
        || params.split('&').any(|param| param == "mode=memory");
    (!in_memory).then(|| PathBuf::from(path))
}
