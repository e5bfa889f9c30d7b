//! rustls configurations for every TCP link: TLS 1.3 only, ring as the provider, the private CA
//! as the only trust anchor. Servers can require client certificates (mutual TLS for peers and
//! endpoints). PEM is read with rustls-pki-types' `PemObject` (rustls-pemfile is unmaintained).

use std::sync::Arc;

use rustls::crypto::ring::default_provider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// TLS configuration errors, by whose fault.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A PEM input did not hold what it should.
    #[error("bad PEM in {what}: {message}")]
    Pem {
        /// Which input.
        what: &'static str,
        /// Why.
        message: String,
    },
    /// rustls refused the certificate, key or CA.
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// The client verifier could not be built.
    #[error("client certificate verifier: {0}")]
    Verifier(String),
}

fn certs(what: &'static str, pem: &str) -> Result<Vec<CertificateDer<'static>>, Error> {
    let v: Vec<_> = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| Error::Pem {
            what,
            message: e.to_string(),
        })?;
    if v.is_empty() {
        return Err(Error::Pem {
            what,
            message: "no certificate".into(),
        });
    }
    Ok(v)
}

fn key(pem: &str) -> Result<PrivateKeyDer<'static>, Error> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| Error::Pem {
        what: "private key",
        message: e.to_string(),
    })
}

fn roots(ca_pem: &str) -> Result<RootCertStore, Error> {
    let mut store = RootCertStore::empty();
    for c in certs("CA certificate", ca_pem)? {
        store.add(c)?;
    }
    Ok(store)
}

/// A server configuration presenting `cert_pem`/`key_pem`; with `require_client_cert`, only
/// clients holding a certificate signed by the CA get in.
pub fn server_config(
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
    require_client_cert: bool,
) -> Result<Arc<ServerConfig>, Error> {
    let provider = Arc::new(default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])?;
    let builder = if require_client_cert {
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca_pem)?), provider)
                .build()
                .map_err(|e| Error::Verifier(e.to_string()))?;
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    Ok(Arc::new(builder.with_single_cert(
        certs("certificate", cert_pem)?,
        key(key_pem)?,
    )?))
}

/// A client configuration trusting only the CA, presenting `identity` (certificate and key PEM)
/// when given.
pub fn client_config(
    ca_pem: &str,
    identity: Option<(&str, &str)>,
) -> Result<Arc<ClientConfig>, Error> {
    let builder = ClientConfig::builder_with_provider(Arc::new(default_provider()))
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots(ca_pem)?);
    let config = match identity {
        Some((cert, k)) => builder.with_client_auth_cert(certs("certificate", cert)?, key(k)?)?,
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// The names a certificate (DER) carries: its DNS and IP subject alternative names, then its
/// common name; empty when it does not parse. What a session key or a peer is bound to.
pub fn certificate_names(der: &[u8]) -> Vec<String> {
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
    let Ok((_, cert)) = X509Certificate::from_der(der) else {
        return Vec::new();
    };
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            match n {
                GeneralName::DNSName(d) => names.push((*d).to_owned()),
                GeneralName::IPAddress(b) => {
                    let ip = match b.len() {
                        4 => <[u8; 4]>::try_from(*b).ok().map(std::net::IpAddr::from),
                        16 => <[u8; 16]>::try_from(*b).ok().map(std::net::IpAddr::from),
                        _ => None,
                    };
                    names.extend(ip.map(|i| i.to_string()));
                }
                _ => {}
            }
        }
    }
    for cn in cert.subject().iter_common_name() {
        if let Ok(s) = cn.as_str() {
            if !names.iter().any(|n| n == s) {
                names.push(s.to_owned());
            }
        }
    }
    names
}

/// True when a certificate (DER) carries the TLS server usage (extended key usage
/// serverAuth): an appliance's, not a supervisor's client certificate.
pub fn is_server_certificate(der: &[u8]) -> bool {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let Ok((_, cert)) = X509Certificate::from_der(der) else {
        return false;
    };
    matches!(cert.extended_key_usage(), Ok(Some(eku)) if eku.value.server_auth)
}

/// True when a certificate (DER) carries the TLS client usage (clientAuth): an appliance
/// needs it to dial its cluster peers.
pub fn is_client_certificate(der: &[u8]) -> bool {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let Ok((_, cert)) = X509Certificate::from_der(der) else {
        return false;
    };
    matches!(cert.extended_key_usage(), Ok(Some(eku)) if eku.value.client_auth)
}

/// The first certificate of a PEM text as DER.
pub fn first_certificate_der(pem: &str) -> Result<Vec<u8>, Error> {
    Ok(certs("certificate", pem)?.remove(0).as_ref().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::pki::{create_ca, create_request, sign_request, Pem, Role};
    use rustls::pki_types::ServerName;
    use rustls::{ClientConnection, ServerConnection};

    fn issue(ca: &Pem, name: &str, role: Role) -> Pem {
        let req = create_request(name).unwrap();
        Pem {
            cert: sign_request(&req.cert, ca, role, 365).unwrap(),
            key: req.key,
        }
    }

    #[test]
    fn certificate_names_are_the_subject_alternative_names_and_common_name() {
        let ca = create_ca("test CA", 30).unwrap();
        for (name, role) in [("s1", Role::Client), ("10.0.0.7", Role::Server)] {
            let pem = issue(&ca, name, role);
            let der = certs("certificate", &pem.cert).unwrap().remove(0);
            assert_eq!(certificate_names(der.as_ref()), vec![name.to_owned()]);
        }
        assert!(certificate_names(b"not a certificate").is_empty());
    }

    /// Moves bytes between the two ends until neither has anything to say; the first error wins.
    fn handshake(
        client: &mut ClientConnection,
        server: &mut ServerConnection,
    ) -> Result<(), rustls::Error> {
        for _ in 0..20 {
            let mut buf = Vec::new();
            client.write_tls(&mut buf).unwrap();
            if !buf.is_empty() {
                server.read_tls(&mut &buf[..]).unwrap();
                server.process_new_packets()?;
            }
            let mut back = Vec::new();
            server.write_tls(&mut back).unwrap();
            if !back.is_empty() {
                client.read_tls(&mut &back[..]).unwrap();
                client.process_new_packets()?;
            }
            if !client.is_handshaking() && !server.is_handshaking() && !server.wants_write() {
                return Ok(());
            }
        }
        Err(rustls::Error::General("handshake did not finish".into()))
    }

    fn pair(
        server: Arc<ServerConfig>,
        client: Arc<ClientConfig>,
        name: &str,
    ) -> (ClientConnection, ServerConnection) {
        (
            ClientConnection::new(client, ServerName::try_from(name.to_owned()).unwrap()).unwrap(),
            ServerConnection::new(server).unwrap(),
        )
    }

    #[test]
    fn mutual_tls_with_the_private_ca_and_the_refusals() {
        let ca = create_ca("silentmon test CA", 3650).unwrap();
        let srv = issue(&ca, "appliance1.example", Role::Server);
        let cli = issue(&ca, "supervisor-s1", Role::Client);
        let server = server_config(&ca.cert, &srv.cert, &srv.key, true).unwrap();

        // Mutual TLS 1.3 works, and data flows.
        let good = client_config(&ca.cert, Some((&cli.cert, &cli.key))).unwrap();
        let (mut c, mut s) = pair(server.clone(), good, "appliance1.example");
        handshake(&mut c, &mut s).unwrap();
        assert_eq!(c.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_3));
        std::io::Write::write_all(&mut c.writer(), b"hello").unwrap();
        let mut buf = Vec::new();
        c.write_tls(&mut buf).unwrap();
        s.read_tls(&mut &buf[..]).unwrap();
        s.process_new_packets().unwrap();
        let mut got = [0u8; 5];
        std::io::Read::read_exact(&mut s.reader(), &mut got).unwrap();
        assert_eq!(&got, b"hello");

        // No client certificate: the server refuses.
        let anonymous = client_config(&ca.cert, None).unwrap();
        let (mut c, mut s) = pair(server.clone(), anonymous, "appliance1.example");
        assert!(handshake(&mut c, &mut s).is_err());

        // A client trusting another CA refuses the server.
        let other = create_ca("someone else", 3650).unwrap();
        let stranger = client_config(&other.cert, None).unwrap();
        let (mut c, mut s) = pair(server.clone(), stranger, "appliance1.example");
        assert!(handshake(&mut c, &mut s).is_err());

        // A client certificate from another CA is refused by the server.
        let foreign = issue(&other, "intruder", Role::Client);
        let intruder = client_config(&ca.cert, Some((&foreign.cert, &foreign.key))).unwrap();
        let (mut c, mut s) = pair(server, intruder, "appliance1.example");
        assert!(handshake(&mut c, &mut s).is_err());

        // The wrong server name is refused.
        let good = client_config(&ca.cert, Some((&cli.cert, &cli.key))).unwrap();
        let plain = server_config(&ca.cert, &srv.cert, &srv.key, false).unwrap();
        let (mut c, mut s) = pair(plain, good, "other.example");
        assert!(handshake(&mut c, &mut s).is_err());
    }

    #[test]
    fn bad_pem_is_named() {
        let e = client_config("not pem", None).unwrap_err().to_string();
        assert!(e.contains("CA certificate"), "{e}");
    }
}
