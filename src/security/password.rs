//! Password hashes: argon2id PHC strings (`silentmon passwd` makes them; the configuration keeps
//! only hashes). Verification takes the parameters from the stored hash.

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::Argon2;

/// Password-hash errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Not an argon2 PHC string.
    #[error("not an argon2 password hash (make one with `silentmon passwd`): {0}")]
    BadHash(String),
    /// Hashing failed.
    #[error("cannot hash the password: {0}")]
    Hash(String),
}

/// Hashes `password` with a fresh random salt (argon2id, default parameters).
pub fn hash(password: &str) -> Result<String, Error> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| Error::Hash(e.to_string()))
}

/// Checks that `hash` is a usable argon2 PHC string.
pub fn check_hash(hash: &str) -> Result<(), Error> {
    let parsed = PasswordHash::new(hash).map_err(|e| Error::BadHash(e.to_string()))?;
    if !parsed.algorithm.as_str().starts_with("argon2") {
        return Err(Error::BadHash(format!("algorithm {}", parsed.algorithm)));
    }
    Ok(())
}

/// A hash of no one's password with the default parameters, made once: verifying a password
/// against it costs what verifying a real one does, so an unknown id or an account without a
/// password answers in the same time as a wrong password.
pub fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash("silentmon: no such account").expect("argon2 hashes a constant"))
}

/// True when `password` matches `hash` (false for a malformed hash).
pub fn verify(password: &str, hash: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_verify_and_reject() {
        let h = hash("s3cret").unwrap();
        assert!(h.starts_with("$argon2id$"));
        check_hash(&h).unwrap();
        assert!(verify("s3cret", &h));
        assert!(!verify("S3cret", &h));
        assert!(!verify("s3cret", "garbage"));
        assert!(check_hash("plain").is_err());
        // Salted: the same password hashes differently.
        assert_ne!(hash("s3cret").unwrap(), h);
    }
}
