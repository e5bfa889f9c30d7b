//! The private CA, in the seed's three steps: a self-signed CA ([`create_ca`]), a key and a
//! certificate request for a server or a client ([`create_request`]), the CA signing a request
//! ([`sign_request`]). PEM in, PEM out; files are the caller's business (`silentmon certs`).

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};

/// PKI errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// rcgen refused (bad name, bad PEM, signing failure).
    #[error("{what}: {source}")]
    Rcgen {
        /// What was being done.
        what: &'static str,
        /// Cause.
        source: rcgen::Error,
    },
}

/// Errors of the CA key's encryption.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The password does not open the key (or the file is not an encrypted PKCS#8 key).
    #[error("cannot decrypt the CA key: wrong password or not an encrypted PKCS#8 key")]
    Decrypt,
    /// The key is not PKCS#8 PEM.
    #[error("the CA key is not a PKCS#8 PEM key: {0}")]
    Format(String),
    /// An empty password protects nothing.
    #[error("the CA key password must not be empty")]
    EmptyPassword,
}

/// Encrypts a PKCS#8 PEM private key with `password` (PBES2: scrypt, AES-256-CBC), giving an
/// `ENCRYPTED PRIVATE KEY` PEM that OpenSSL reads as well.
pub fn encrypt_key(key_pem: &str, password: &str) -> Result<String, KeyError> {
    use pkcs8::der::pem::LineEnding;
    use pkcs8::der::Decode;
    if password.is_empty() {
        return Err(KeyError::EmptyPassword);
    }
    let (label, der) = pkcs8::der::pem::decode_vec(key_pem.as_bytes())
        .map_err(|e| KeyError::Format(e.to_string()))?;
    if label != "PRIVATE KEY" {
        return Err(KeyError::Format(format!("PEM label {label:?}")));
    }
    let info =
        pkcs8::PrivateKeyInfo::from_der(&der).map_err(|e| KeyError::Format(e.to_string()))?;
    // scrypt N = 2^14, r = 8 (16 MiB): inside OpenSSL's 32 MiB scrypt memory limit, so
    // `openssl pkey` opens the key too. Salt and IV from the OS.
    let mut salt = [0u8; 16];
    let mut iv = [0u8; 16];
    getrandom::fill(&mut salt).expect("the OS random source");
    getrandom::fill(&mut iv).expect("the OS random source");
    let scrypt = pkcs8::pkcs5::scrypt::Params::new(14, 8, 1, 32)
        .map_err(|e| KeyError::Format(e.to_string()))?;
    let params = pkcs8::pkcs5::pbes2::Parameters::scrypt_aes256cbc(scrypt, &salt, &iv)
        .map_err(|e| KeyError::Format(e.to_string()))?;
    let doc = info
        .encrypt_with_params(params, password.as_bytes())
        .map_err(|e| KeyError::Format(e.to_string()))?;
    doc.to_pem("ENCRYPTED PRIVATE KEY", LineEnding::LF)
        .map(|p| p.to_string())
        .map_err(|e| KeyError::Format(e.to_string()))
}

/// Opens an `ENCRYPTED PRIVATE KEY` PEM with `password`; a plain `PRIVATE KEY` PEM is returned
/// as it is (a CA made with `--no-password`).
pub fn decrypt_key(pem: &str, password: Option<&str>) -> Result<String, KeyError> {
    use pkcs8::der::pem::LineEnding;
    use pkcs8::der::Decode;
    let (label, der) =
        pkcs8::der::pem::decode_vec(pem.as_bytes()).map_err(|e| KeyError::Format(e.to_string()))?;
    match label {
        "PRIVATE KEY" => Ok(pem.to_owned()),
        "ENCRYPTED PRIVATE KEY" => {
            let password = password.ok_or(KeyError::Decrypt)?;
            let info = pkcs8::EncryptedPrivateKeyInfo::from_der(&der)
                .map_err(|e| KeyError::Format(e.to_string()))?;
            let doc = info
                .decrypt(password.as_bytes())
                .map_err(|_| KeyError::Decrypt)?;
            doc.to_pem("PRIVATE KEY", LineEnding::LF)
                .map(|p| p.to_string())
                .map_err(|e| KeyError::Format(e.to_string()))
        }
        other => Err(KeyError::Format(format!("PEM label {other:?}"))),
    }
}

fn err(what: &'static str) -> impl FnOnce(rcgen::Error) -> Error {
    move |source| Error::Rcgen { what, source }
}

/// What a certificate is for.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// An appliance (TLS server on 42028/42228, and peer-link server/client).
    Server,
    /// A supervisor endpoint or a CLI.
    Client,
    /// An appliance in a cluster: the server usage for its services and the client usage to
    /// dial its peers (42029), in one certificate.
    Peer,
}

/// A PEM certificate and its PEM private key.
#[derive(Clone, Debug)]
pub struct Pem {
    /// Certificate (or request) PEM.
    pub cert: String,
    /// Private key PEM (PKCS#8).
    pub key: String,
}

fn name(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "silentmon");
    dn.push(DnType::CommonName, cn);
    dn
}

/// Step 1: a self-signed CA valid for `days`.
pub fn create_ca(common_name: &str, days: i64) -> Result<Pem, Error> {
    let key = KeyPair::generate().map_err(err("generating the CA key"))?;
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(err("CA parameters"))?;
    params.distinguished_name = name(common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let (y, m, d) = yesterday_ymd();
    let now = rcgen::date_time_ymd(y, m, d);
    params.not_before = now;
    params.not_after = now + time_days(days);
    let cert = params
        .self_signed(&key)
        .map_err(err("self-signing the CA"))?;
    Ok(Pem {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// Yesterday's date (UTC) from the system clock: certificates are valid from then, so a clock
/// slightly behind still accepts them.
fn yesterday_ymd() -> (i32, u8, u8) {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let (y, m, d) = crate::time::civil_from_days(secs / 86_400 - 1);
    (y as i32, m, d)
}

fn time_days(days: i64) -> std::time::Duration {
    std::time::Duration::from_secs(days.max(1) as u64 * 86_400)
}

/// Step 2: a key and a certificate request for `name` (a DNS name or an IP address).
pub fn create_request(name_or_ip: &str) -> Result<Pem, Error> {
    let key = KeyPair::generate().map_err(err("generating the key"))?;
    let mut params =
        CertificateParams::new(vec![name_or_ip.to_owned()]).map_err(err("request parameters"))?;
    params.distinguished_name = name(name_or_ip);
    let csr = params
        .serialize_request(&key)
        .map_err(err("building the request"))?;
    Ok(Pem {
        cert: csr.pem().map_err(err("encoding the request"))?,
        key: key.serialize_pem(),
    })
}

/// Step 3: the CA signs a request for `role`, valid for `days`.
pub fn sign_request(csr_pem: &str, ca: &Pem, role: Role, days: i64) -> Result<String, Error> {
    let mut csr =
        CertificateSigningRequestParams::from_pem(csr_pem).map_err(err("reading the request"))?;
    let ca_key = KeyPair::from_pem(&ca.key).map_err(err("reading the CA key"))?;
    let issuer =
        Issuer::from_ca_cert_pem(&ca.cert, ca_key).map_err(err("reading the CA certificate"))?;
    let (y, m, d) = yesterday_ymd();
    let now = rcgen::date_time_ymd(y, m, d);
    csr.params.not_before = now;
    csr.params.not_after = now + time_days(days);
    csr.params.is_ca = IsCa::ExplicitNoCa;
    csr.params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    csr.params.extended_key_usages = match role {
        Role::Server => vec![ExtendedKeyUsagePurpose::ServerAuth],
        Role::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
        Role::Peer => vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ],
    };
    let cert = csr.signed_by(&issuer).map_err(err("signing the request"))?;
    Ok(cert.pem())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        use crate::time::civil_from_days;
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        assert_eq!(civil_from_days(20_416), (2025, 11, 24));
    }

    #[test]
    fn three_steps_give_a_certificate_for_the_name() {
        let ca = create_ca("CA", 3650).unwrap();
        assert!(ca.cert.starts_with("-----BEGIN CERTIFICATE-----"));
        let req = create_request("10.0.0.5").unwrap();
        assert!(req.cert.contains("CERTIFICATE REQUEST"));
        let cert = sign_request(&req.cert, &ca, Role::Server, 30).unwrap();
        assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(sign_request("garbage", &ca, Role::Client, 30).is_err());
    }

    #[test]
    fn the_ca_key_is_encrypted_and_opens_only_with_its_password() {
        let ca = create_ca("CA", 30).unwrap();
        let locked = encrypt_key(&ca.key, "correct horse").unwrap();
        assert!(locked.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"));
        assert!(!locked.contains(ca.key.lines().nth(1).unwrap()));
        assert!(matches!(
            decrypt_key(&locked, Some("wrong")),
            Err(KeyError::Decrypt)
        ));
        assert!(matches!(decrypt_key(&locked, None), Err(KeyError::Decrypt)));
        let opened = decrypt_key(&locked, Some("correct horse")).unwrap();
        // The opened key signs like the original.
        let ca2 = Pem {
            cert: ca.cert.clone(),
            key: opened,
        };
        let req = create_request("host.example").unwrap();
        assert!(sign_request(&req.cert, &ca2, Role::Server, 30).is_ok());
        assert!(matches!(
            encrypt_key(&ca.key, ""),
            Err(KeyError::EmptyPassword)
        ));
        assert_eq!(decrypt_key(&ca.key, None).unwrap(), ca.key);
    }
}
