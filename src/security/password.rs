//! Password hashes: argon2id PHC strings (`silentmon passwd` makes them; the configuration keeps
//! only hashes). Verification takes the parameters from the stored hash.
//!
//! Memory: a check fills argon2's memory (19 MiB with the default parameters). A [`Verifier`]
//! keeps that block and reuses it for every check it makes, so a server checking passwords on
//! a fixed set of threads holds one block per thread; allocating a fresh block per check let
//! the allocator keep a freed one per thread arena (measured: 20 logins left the appliance at
//! 226 MiB instead of 11).

use argon2::password_hash::phc::{Output, PasswordHash};
use argon2::password_hash::PasswordHasher;
use argon2::{Algorithm, Argon2, Block, Params, Version};

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

/// True when `password` matches `hash` (false for a malformed hash). Allocates argon2's
/// memory for this one check: a thread that checks many uses a [`Verifier`].
pub fn verify(password: &str, hash: &str) -> bool {
    Verifier::default().verify(password, hash)
}

/// Most argon2 memory a hash may ask for: 1 GiB (the default is 19 MiB).
pub const MAX_MEMORY_KIB: u32 = 1 << 20;

/// Checks passwords with one argon2 memory block, kept and reused.
#[derive(Default)]
pub struct Verifier {
    blocks: Vec<Block>,
}

impl Verifier {
    /// True when `password` matches `hash` (false for a malformed hash, or one asking for
    /// more than [`MAX_MEMORY_KIB`]).
    pub fn verify(&mut self, password: &str, hash: &str) -> bool {
        let Ok(parsed) = PasswordHash::new(hash) else {
            return false;
        };
        let (Some(salt), Some(expected)) = (&parsed.salt, &parsed.hash) else {
            return false;
        };
        let Ok(algorithm) = Algorithm::try_from(parsed.algorithm.as_str()) else {
            return false;
        };
        let version = match parsed.version.map(Version::try_from).transpose() {
            Ok(v) => v.unwrap_or_default(),
            Err(_) => return false,
        };
        let Ok(params) = Params::try_from(&parsed) else {
            return false;
        };
        if params.m_cost() > MAX_MEMORY_KIB {
            return false;
        }
        let blocks = params.block_count();
        if self.blocks.len() < blocks {
            self.blocks.resize(blocks, Block::default());
        }
        let mut buf = [0u8; Output::MAX_LENGTH];
        let Some(out) = buf.get_mut(..expected.len()) else {
            return false;
        };
        let argon = Argon2::new(algorithm, version, params);
        let memory = &mut self.blocks[..blocks];
        if argon
            .hash_password_into_with_memory(password.as_bytes(), salt.as_ref(), out, memory)
            .is_err()
        {
            return false;
        }
        // `Output`'s equality is constant-time.
        Output::new(out).is_ok_and(|computed| computed == *expected)
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

    #[test]
    fn one_verifier_checks_many_hashes_with_one_block() {
        let mut v = Verifier::default();
        let a = hash("one").unwrap();
        let light = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(64, 1, 1, None).unwrap(),
        );
        let b = light.hash_password(b"two").unwrap().to_string();
        assert!(v.verify("one", &a) && !v.verify("two", &a));
        let kept = v.blocks.len();
        assert!(v.verify("two", &b) && !v.verify("one", &b));
        assert_eq!(v.blocks.len(), kept, "the larger block is kept and reused");
        assert!(v.verify("one", &a));
        // A hash asking for absurd memory, or not argon2, is refused without trying.
        let greedy = "$argon2id$v=19$m=4194304,t=1,p=1$c29tZXNhbHQ$\
                      iWh06vD8Fy27wf9npn6FXWiCX4K6pW6Ue1Bnzz07Z8A";
        assert!(!v.verify("x", greedy));
        assert_eq!(v.blocks.len(), kept);
        assert!(!v.verify("x", "$pbkdf2-sha256$i=1$c2FsdA$aGFzaA"));
    }
}
