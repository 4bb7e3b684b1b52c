//! mosquitto_passwd password files: `user:hash` lines, where the hash is
//! `$7$<iterations>$<salt>$<hash>` (PBKDF2-HMAC-SHA512, mosquitto 2.0's
//! default) or `$6$<salt>$<hash>` (one SHA-512 of password then salt),
//! salt and hash in standard base64. Files made by Debian's
//! `mosquitto_passwd` are read as they are, and `herald passwd` writes the
//! same `$7$` lines.
//!
//! Verification is CPU work (PBKDF2): callers run it off the async runtime.
//! Comparisons are constant-time. A password never appears in an error or
//! a log line.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::rand::SecureRandom;
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::path::Path;
use subtle::ConstantTimeEq;

/// Iterations `herald passwd` uses, as mosquitto_passwd does.
pub const ITERATIONS: u32 = 101;
/// Salt length of new entries, as mosquitto_passwd.
const SALT_LEN: usize = 12;
/// SHA-512 output length.
const HASH_LEN: usize = 64;

/// A stored password hash.
#[derive(Clone, PartialEq, Eq)]
pub enum Hash {
    /// `$6$`: SHA-512(password ‖ salt).
    Sha512 {
        /// The salt.
        salt: Vec<u8>,
        /// The digest.
        hash: Vec<u8>,
    },
    /// `$7$`: PBKDF2-HMAC-SHA512.
    Pbkdf2 {
        /// PBKDF2 rounds (mosquitto_passwd: 101).
        iterations: NonZeroU32,
        /// The salt.
        salt: Vec<u8>,
        /// The derived key.
        hash: Vec<u8>,
    },
}

impl std::fmt::Debug for Hash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Hash::Sha512 { .. } => f.write_str("$6$…"),
            Hash::Pbkdf2 { iterations, .. } => write!(f, "$7${iterations}$…"),
        }
    }
}

impl Hash {
    /// Parses the part after `user:`.
    pub fn parse(text: &str) -> Result<Hash, String> {
        let b64 = |what: &str, s: &str| {
            STANDARD
                .decode(s)
                .map_err(|_| format!("{what} is not base64"))
        };
        if let Some(rest) = text.strip_prefix("$7$") {
            let mut parts = rest.split('$');
            let (Some(iter), Some(salt), Some(hash), None) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                return Err("a $7$ hash is $7$<iterations>$<salt>$<hash>".into());
            };
            let iterations = iter
                .parse::<NonZeroU32>()
                .map_err(|_| format!("iterations {iter:?} is not a positive number"))?;
            let hash = b64("hash", hash)?;
            if hash.len() != HASH_LEN {
                return Err(format!("hash is {} bytes, not {HASH_LEN}", hash.len()));
            }
            Ok(Hash::Pbkdf2 {
                iterations,
                salt: b64("salt", salt)?,
                hash,
            })
        } else if let Some(rest) = text.strip_prefix("$6$") {
            let Some((salt, hash)) = rest.split_once('$') else {
                return Err("a $6$ hash is $6$<salt>$<hash>".into());
            };
            let hash = b64("hash", hash)?;
            if hash.len() != HASH_LEN {
                return Err(format!("hash is {} bytes, not {HASH_LEN}", hash.len()));
            }
            Ok(Hash::Sha512 {
                salt: b64("salt", salt)?,
                hash,
            })
        } else {
            Err("not a mosquitto_passwd hash ($6$ or $7$); plain-text passwords must be hashed first (herald passwd, mosquitto_passwd -U)".into())
        }
    }

    /// A new `$7$` hash of `password` with a random salt.
    pub fn new(password: &[u8]) -> Result<Hash, String> {
        let mut salt = vec![0u8; SALT_LEN];
        ring::rand::SystemRandom::new()
            .fill(&mut salt)
            .map_err(|_| "no random numbers for a salt".to_string())?;
        let iterations = NonZeroU32::new(ITERATIONS).unwrap_or(NonZeroU32::MIN);
        let mut hash = vec![0u8; HASH_LEN];
        ring::pbkdf2::derive(
            ring::pbkdf2::PBKDF2_HMAC_SHA512,
            iterations,
            &salt,
            password,
            &mut hash,
        );
        Ok(Hash::Pbkdf2 {
            iterations,
            salt,
            hash,
        })
    }

    /// Whether `password` matches, compared in constant time.
    pub fn verify(&self, password: &[u8]) -> bool {
        match self {
            Hash::Sha512 { salt, hash } => {
                let mut ctx = ring::digest::Context::new(&ring::digest::SHA512);
                ctx.update(password);
                ctx.update(salt);
                ctx.finish().as_ref().ct_eq(hash).into()
            }
            Hash::Pbkdf2 {
                iterations,
                salt,
                hash,
            } => {
                // ring compares in constant time.
                ring::pbkdf2::verify(
                    ring::pbkdf2::PBKDF2_HMAC_SHA512,
                    *iterations,
                    salt,
                    password,
                    hash,
                )
                .is_ok()
            }
        }
    }

    /// The text after `user:`.
    pub fn to_line(&self) -> String {
        match self {
            Hash::Sha512 { salt, hash } => {
                format!("$6${}${}", STANDARD.encode(salt), STANDARD.encode(hash))
            }
            Hash::Pbkdf2 {
                iterations,
                salt,
                hash,
            } => format!(
                "$7${iterations}${}${}",
                STANDARD.encode(salt),
                STANDARD.encode(hash)
            ),
        }
    }
}

/// A loaded password file.
#[derive(Debug, Default, Clone)]
pub struct PasswordFile {
    users: HashMap<String, Hash>,
}

/// What a password file says about a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Known user, right password.
    Match,
    /// Known user, wrong or missing password.
    Mismatch,
    /// Not in the file.
    Unknown,
}

impl PasswordFile {
    /// Reads and parses `path`; errors are `file:line: problem`.
    pub fn load(path: &Path) -> Result<PasswordFile, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
        PasswordFile::parse(&text)
            .map_err(|(line, why)| format!("{}:{line}: {why}", path.display()))
    }

    /// Parses the text of a password file; `Err((line, problem))`.
    /// Blank lines and `#` comments are skipped, as mosquitto does.
    pub fn parse(text: &str) -> Result<PasswordFile, (usize, String)> {
        let mut users = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((user, hash)) = line.split_once(':') else {
                return Err((i + 1, "expected user:hash".into()));
            };
            if user.is_empty() {
                return Err((i + 1, "empty user name".into()));
            }
            let hash = Hash::parse(hash).map_err(|why| (i + 1, format!("user {user:?}: {why}")))?;
            users.insert(user.to_owned(), hash);
        }
        Ok(PasswordFile { users })
    }

    /// Checks a user name and password (CPU work: call off the runtime).
    /// A user the file does not know costs the same PBKDF2 work as one it
    /// knows, so the time of the answer does not tell which user names
    /// exist.
    pub fn check(&self, user: &str, password: Option<&[u8]>) -> Check {
        match self.users.get(user) {
            None => {
                let iterations = NonZeroU32::new(ITERATIONS).unwrap_or(NonZeroU32::MIN);
                let _ = ring::pbkdf2::verify(
                    ring::pbkdf2::PBKDF2_HMAC_SHA512,
                    iterations,
                    b"herald-no-such-user",
                    password.unwrap_or_default(),
                    &[0u8; HASH_LEN],
                );
                Check::Unknown
            }
            Some(hash) => match password {
                Some(p) if hash.verify(p) => Check::Match,
                _ => Check::Mismatch,
            },
        }
    }

    /// Number of users.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether the file has no users.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

/// `herald passwd`: adds or replaces `user` in the file at `path` with a
/// new `$7$` hash of `password`, keeping every other line as it is;
/// `create` starts a new file (overwriting one that exists). The file is
/// replaced atomically (written beside it, then renamed).
pub fn set_password(path: &Path, create: bool, user: &str, password: &[u8]) -> Result<(), String> {
    if user.is_empty() || user.contains(':') {
        return Err(format!(
            "user name {user:?} must be non-empty and hold no ':'"
        ));
    }
    let old = if create {
        String::new()
    } else {
        std::fs::read_to_string(path)
            .map_err(|e| format!("{}: cannot read: {e} (-c creates it)", path.display()))?
    };
    let entry = format!("{user}:{}", Hash::new(password)?.to_line());
    let mut out = String::with_capacity(old.len() + entry.len() + 1);
    let mut replaced = false;
    for line in old.lines() {
        if line.split_once(':').is_some_and(|(u, _)| u == user) {
            if !replaced {
                out.push_str(&entry);
                out.push('\n');
                replaced = true;
            }
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    if !replaced {
        out.push_str(&entry);
        out.push('\n');
    }
    let tmp = path.with_extension("herald-tmp");
    write_private(&tmp, out.as_bytes())
        .map_err(|e| format!("{}: cannot write: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("{}: cannot replace: {e}", path.display()))
}

/// Writes a file readable by its owner only (it holds password hashes).
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Made by Debian's mosquitto_passwd 2.0.11: alice/secret ($7$, the
    /// default) and bob/pw2 (`-H sha512`, a $6$ entry).
    const MOSQUITTO: &str = "\
alice:$7$101$CNPWj+4wBsX2mEs8$Mh9uy6C4kwwQfjlbhIqSkTczNuGGv6xsY5fBrnYugFgDlOhXUdRxOsqc8VqB2HRvdzNPJp12hbKGNWQSQHIdcw==
bob:$6$fn2paVHOTLANhBd9$qtzbBFtUTMOMGC1gtWhjRV1sKo8Cy8EsIBO64pzxGffzKI+31Ak6bK95iC3jNYrTt0ZRFqgrWCwb19qDno9nAw==
";

    #[test]
    fn reads_mosquitto_passwd_entries() {
        let file = PasswordFile::parse(MOSQUITTO).unwrap();
        assert_eq!(file.check("alice", Some(b"secret")), Check::Match);
        assert_eq!(file.check("alice", Some(b"secreT")), Check::Mismatch);
        assert_eq!(file.check("alice", None), Check::Mismatch);
        assert_eq!(file.check("bob", Some(b"pw2")), Check::Match);
        assert_eq!(file.check("bob", Some(b"pw")), Check::Mismatch);
        assert_eq!(file.check("carol", Some(b"pw2")), Check::Unknown);
    }

    #[test]
    fn new_hash_round_trips_through_its_line() {
        let hash = Hash::new(b"p@ss").unwrap();
        let again = Hash::parse(&hash.to_line()).unwrap();
        assert!(again.verify(b"p@ss"));
        assert!(!again.verify(b"p@sS"));
        assert!(hash.to_line().starts_with("$7$101$"));
    }

    #[test]
    fn bad_lines_name_line_and_problem_never_the_secret() {
        let err = PasswordFile::parse("a:$7$101$AAAA$AAAA\nb:plaintext-secret\n").unwrap_err();
        assert_eq!(err.0, 1);
        assert!(err.1.contains("hash is 3 bytes"), "{}", err.1);
        let err = PasswordFile::parse("b:plaintext-secret\n").unwrap_err();
        assert!(!err.1.contains("plaintext-secret"), "{}", err.1);
        assert_eq!(PasswordFile::parse("nocolon\n").unwrap_err().0, 1);
        assert!(format!("{:?}", Hash::new(b"x").unwrap()).starts_with("$7$101$"));
    }

    #[test]
    fn set_password_adds_and_replaces() {
        let dir = std::env::temp_dir().join(format!("herald-passwd-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("pw");
        set_password(&path, true, "u1", b"one").unwrap();
        set_password(&path, false, "u2", b"two").unwrap();
        set_password(&path, false, "u1", b"uno").unwrap();
        let file = PasswordFile::load(&path).unwrap();
        assert_eq!(file.len(), 2);
        assert_eq!(file.check("u1", Some(b"uno")), Check::Match);
        assert_eq!(file.check("u2", Some(b"two")), Check::Match);
        assert!(set_password(&dir.join("missing"), false, "u", b"p").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
