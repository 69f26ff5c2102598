//! Keys and certificates for one throw-away control plane.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

use super::Error;

/// The user name of the admin client certificate (group `system:masters`).
pub const ADMIN_USER: &str = "verdant-admin";

/// PEM files of one control plane, written under its directory.
#[derive(Debug, Clone)]
pub struct Pki {
    /// The CA that signs every certificate here, and that the apiserver trusts for clients.
    pub ca_cert: PathBuf,
    /// The CA's private key (kube-controller-manager signs CSRs with it).
    pub ca_key: PathBuf,
    /// kube-apiserver's serving certificate (127.0.0.1, localhost, kubernetes.default.svc, ...).
    pub serving_cert: PathBuf,
    /// kube-apiserver's serving key.
    pub serving_key: PathBuf,
    /// The admin client certificate.
    pub admin_cert: PathBuf,
    /// The admin client key.
    pub admin_key: PathBuf,
    /// The key that signs service-account tokens.
    pub service_account_key: PathBuf,
    /// Its public half, which the apiserver verifies tokens with.
    pub service_account_pub: PathBuf,
}

impl Pki {
    /// Generates a fresh CA, serving and admin certificates and a service-account key in `dir`;
    /// the apiserver's certificate also names `addresses` (a node's, where it listens there).
    pub fn generate(dir: &Path, addresses: &[std::net::IpAddr]) -> Result<Self, Error> {
        let pki_err = |e: rcgen::Error| Error::Pki(e.to_string());

        let ca_params = ca_params()?;
        let ca_key = KeyPair::generate().map_err(pki_err)?;
        let ca_key_pem = ca_key.serialize_pem();
        let ca = CertifiedIssuer::self_signed(ca_params, ca_key).map_err(pki_err)?;

        let serving_sans = [
            "127.0.0.1",
            "localhost",
            "10.0.0.1",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
        ]
        .map(String::from)
        .into_iter()
        .chain(addresses.iter().map(ToString::to_string))
        .collect();
        let (serving_cert, serving_key) = leaf(
            &ca,
            serving_sans,
            "kube-apiserver",
            None,
            ExtendedKeyUsagePurpose::ServerAuth,
        )?;
        let (admin_cert, admin_key) = leaf(
            &ca,
            Vec::new(),
            ADMIN_USER,
            Some("system:masters"),
            ExtendedKeyUsagePurpose::ClientAuth,
        )?;
        let sa_key = KeyPair::generate().map_err(pki_err)?;

        let pki = Self {
            ca_cert: dir.join("ca.crt"),
            ca_key: dir.join("ca.key"),
            serving_cert: dir.join("apiserver.crt"),
            serving_key: dir.join("apiserver.key"),
            admin_cert: dir.join("admin.crt"),
            admin_key: dir.join("admin.key"),
            service_account_key: dir.join("sa.key"),
            service_account_pub: dir.join("sa.pub"),
        };
        let files = [
            (&pki.ca_cert, ca.pem()),
            (&pki.ca_key, ca_key_pem),
            (&pki.serving_cert, serving_cert),
            (&pki.serving_key, serving_key),
            (&pki.admin_cert, admin_cert),
            (&pki.admin_key, admin_key),
            (&pki.service_account_key, sa_key.serialize_pem()),
            (&pki.service_account_pub, sa_key.public_key_pem()),
        ];
        for (path, pem) in files {
            std::fs::write(path, pem).map_err(|e| Error::io(path, e))?;
        }
        Ok(pki)
    }

    /// Issues a client certificate for `user` in `group`, signed by this CA, into `dir`; returns
    /// the certificate and key files.
    pub fn issue_client(
        &self,
        dir: &Path,
        user: &str,
        group: Option<&str>,
    ) -> Result<(PathBuf, PathBuf), Error> {
        let pki_err = |e: rcgen::Error| Error::Pki(e.to_string());
        let key_pem =
            std::fs::read_to_string(&self.ca_key).map_err(|e| Error::io(&self.ca_key, e))?;
        let ca_key = KeyPair::from_pem(&key_pem).map_err(pki_err)?;
        // The same subject and key as the CA certificate: certificates it signs chain to it.
        let issuer = Issuer::new(ca_params()?, ca_key);
        let (cert, key) = leaf(
            &issuer,
            Vec::new(),
            user,
            group,
            ExtendedKeyUsagePurpose::ClientAuth,
        )?;
        let file = |ext: &str| dir.join(format!("{}.{ext}", user.replace([':', '/'], "_")));
        let (cert_path, key_path) = (file("crt"), file("key"));
        std::fs::write(&cert_path, cert).map_err(|e| Error::io(&cert_path, e))?;
        std::fs::write(&key_path, key).map_err(|e| Error::io(&key_path, e))?;
        Ok((cert_path, key_path))
    }
}

fn ca_params() -> Result<CertificateParams, Error> {
    let mut params =
        CertificateParams::new(Vec::<String>::new()).map_err(|e| Error::Pki(e.to_string()))?;
    params
        .distinguished_name
        .push(DnType::CommonName, "verdant-test-ca");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    Ok(params)
}

/// A leaf certificate and key (PEM), signed by `issuer`.
fn leaf(
    issuer: &Issuer<'_, KeyPair>,
    sans: Vec<String>,
    common_name: &str,
    organization: Option<&str>,
    usage: ExtendedKeyUsagePurpose,
) -> Result<(String, String), Error> {
    let pki_err = |e: rcgen::Error| Error::Pki(e.to_string());
    let mut params = CertificateParams::new(sans).map_err(pki_err)?;
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    if let Some(org) = organization {
        params
            .distinguished_name
            .push(DnType::OrganizationName, org);
    }
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![usage];
    let key = KeyPair::generate().map_err(pki_err)?;
    let cert = params.signed_by(&key, issuer).map_err(pki_err)?;
    Ok((cert.pem(), key.serialize_pem()))
}
