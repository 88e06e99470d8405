//! SSH signatures on the commits baton makes with git2 (`repo.signingKey` in `baton.yaml`): the
//! SSHSIG format that `git commit -S` writes with `gpg.format=ssh` (namespace `git`, SHA-512),
//! stored in the commit's `gpgsig` header, so that `git verify-commit` and GitHub (when the
//! public key is one of the bot account's signing keys) accept it. The key is read once, at
//! start; it stays in memory only, and neither `Debug` nor an error prints it.

use ssh_key::{HashAlg, LineEnding, PrivateKey};

use crate::config::secret::{Secret, SecretError};

/// The field of `baton.yaml` that names the key.
pub const FIELD: &str = "repo.signingKey";

/// The namespace Git signs commits and tags in (`git -c gpg.format=ssh commit -S`).
const NAMESPACE: &str = "git";

/// Why the signing key cannot be used. Names the field and what is wrong, never the key.
#[derive(Debug, thiserror::Error)]
pub enum SigningKeyError {
    #[error("{FIELD}: {0}")]
    Unreadable(#[source] SecretError),
    #[error(
        "{FIELD}: not an OpenSSH private key ({0}); make one with `ssh-keygen -t ed25519 -N '' -f baton-signing`"
    )]
    Unparseable(String),
    #[error(
        "{FIELD}: the key is encrypted with a passphrase; baton signs unattended, so give it a key without one (`ssh-keygen -p -N '' -f <file>` removes it from a copy)"
    )]
    Encrypted,
    #[error("{FIELD}: {0} keys cannot sign here; use an ed25519 (or ECDSA P-256) key")]
    Unsupported(String),
}

/// A commit signature could not be made (a key that cannot sign; not expected after start).
#[derive(Debug, thiserror::Error)]
#[error("cannot sign the commit with {FIELD}: {0}")]
pub struct SignError(String);

/// The key bot commits are signed with.
#[derive(Clone)]
pub struct CommitSigner {
    key: PrivateKey,
}

impl std::fmt::Debug for CommitSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommitSigner")
            .field("algorithm", &self.key.algorithm().as_str())
            .field("fingerprint", &self.fingerprint())
            .finish()
    }
}

impl CommitSigner {
    /// The signer `baton.yaml` names (`repo.signingKey`), if any, checked now: a key that cannot
    /// be read, parsed or used is a configuration error naming the field.
    pub fn from_config(
        cfg: &crate::config::RuntimeConfig,
    ) -> Result<Option<Self>, SigningKeyError> {
        cfg.repo
            .signing_key
            .as_ref()
            .map(|r| Self::from_secret(&r.resolve().map_err(SigningKeyError::Unreadable)?))
            .transpose()
    }

    /// A signer from an OpenSSH private key (`-----BEGIN OPENSSH PRIVATE KEY-----`).
    pub fn from_secret(text: &Secret) -> Result<Self, SigningKeyError> {
        // The secret was trimmed when read; the PEM parser wants its final newline back.
        let pem = format!("{}\n", text.expose().trim_end());
        let key = PrivateKey::from_openssh(pem.as_bytes()).map_err(|e| {
            // ssh-key's errors describe the encoding, never the key material.
            SigningKeyError::Unparseable(e.to_string())
        })?;
        if key.is_encrypted() {
            return Err(SigningKeyError::Encrypted);
        }
        let signer = Self { key };
        // Prove the key signs now rather than on the first promotion.
        signer
            .sign(b"baton start")
            .map_err(|_| SigningKeyError::Unsupported(signer.key.algorithm().to_string()))?;
        Ok(signer)
    }

    /// The public half in `authorized_keys` form (`ssh-ed25519 AAAA… comment`): what to
    /// register as the bot account's signing key, and what an allowed-signers file lists.
    pub fn public_key(&self) -> String {
        self.key
            .public_key()
            .to_openssh()
            .unwrap_or_else(|_| String::new())
    }

    /// `SHA256:…`, as `ssh-keygen -l` and GitHub show it.
    pub fn fingerprint(&self) -> String {
        self.key.fingerprint(HashAlg::Sha256).to_string()
    }

    /// The armored SSHSIG of `content` (a commit object without its signature header), without
    /// its final newline, for `git2::Repository::commit_signed`.
    pub fn sign(&self, content: &[u8]) -> Result<String, SignError> {
        let sig = self
            .key
            .sign(NAMESPACE, HashAlg::Sha512, content)
            .map_err(|e| SignError(e.to_string()))?;
        let pem = sig
            .to_pem(LineEnding::LF)
            .map_err(|e| SignError(e.to_string()))?;
        Ok(pem.trim_end().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use std::process::Command;

    /// A new key of `kind` made by `ssh-keygen` (`passphrase` empty for none): its private
    /// key file.
    fn keygen(dir: &Path, kind: &str, passphrase: &str) -> std::path::PathBuf {
        let file = dir.join(format!("key-{kind}-{}", passphrase.len()));
        let out = Command::new("ssh-keygen")
            .args(["-q", "-t", kind, "-N", passphrase, "-C", "baton-test", "-f"])
            .arg(&file)
            .output()
            .expect("ssh-keygen (openssh-client) runs");
        assert!(out.status.success(), "{out:?}");
        file
    }

    fn signer(file: &Path) -> Result<CommitSigner, SigningKeyError> {
        CommitSigner::from_secret(&Secret::new(std::fs::read_to_string(file).unwrap()))
    }

    #[test]
    fn signatures_verify_with_ssh_keygen_for_each_key_type() {
        let dir = tempfile::tempdir().unwrap();
        for kind in ["ed25519", "ecdsa"] {
            let key = keygen(dir.path(), kind, "");
            let signer = signer(&key).unwrap();
            let allowed = dir.path().join(format!("allowed-{kind}"));
            std::fs::write(&allowed, format!("baton@test {}\n", signer.public_key())).unwrap();
            let content = b"tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\n\nmessage\n";
            let sig = dir.path().join(format!("sig-{kind}"));
            let armored = signer.sign(content).unwrap();
            assert!(armored.starts_with("-----BEGIN SSH SIGNATURE-----\n"));
            assert!(armored.ends_with("-----END SSH SIGNATURE-----"));
            std::fs::write(&sig, format!("{armored}\n")).unwrap();
            let verify = |data: &[u8]| {
                let mut child = Command::new("ssh-keygen")
                    .args(["-Y", "verify", "-n", "git", "-I", "baton@test", "-f"])
                    .arg(&allowed)
                    .arg("-s")
                    .arg(&sig)
                    .stdin(std::process::Stdio::piped())
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap();
                use std::io::Write as _;
                child.stdin.take().unwrap().write_all(data).unwrap();
                child.wait_with_output().unwrap()
            };
            let ok = verify(content);
            assert!(ok.status.success(), "{kind}: {ok:?}");
            let tampered = verify(b"tree 4b825dc642cb6eb9a060e54bf8d69288fbee4904\n\nother\n");
            assert!(!tampered.status.success(), "{kind}: a changed commit fails");
        }
    }

    #[test]
    fn an_rsa_key_is_refused_at_start_naming_the_field() {
        // ssh-key 0.6 cannot make an SSHSIG with RSA (rsa-sha2-512 signature vs ssh-rsa key).
        let dir = tempfile::tempdir().unwrap();
        let e = signer(&keygen(dir.path(), "rsa", "")).unwrap_err();
        assert!(matches!(e, SigningKeyError::Unsupported(_)), "{e}");
        assert!(
            e.to_string()
                .starts_with("repo.signingKey: ssh-rsa keys cannot sign"),
            "{e}"
        );
    }

    #[test]
    fn an_encrypted_key_is_refused_naming_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let key = keygen(dir.path(), "ed25519", "correct horse");
        let e = signer(&key).unwrap_err();
        assert!(matches!(e, SigningKeyError::Encrypted), "{e}");
        assert!(
            e.to_string()
                .starts_with("repo.signingKey: the key is encrypted")
        );
    }

    #[test]
    fn what_is_not_a_key_is_a_config_error_naming_the_field_not_the_text() {
        let e = CommitSigner::from_secret(&Secret::new("not a key at all, sekrit"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("repo.signingKey: not an OpenSSH private key"),
            "{e}"
        );
        assert!(!e.contains("sekrit"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let public = format!("{}.pub", keygen(dir.path(), "ed25519", "").display());
        let e = signer(Path::new(&public)).unwrap_err().to_string();
        assert!(
            e.starts_with("repo.signingKey: not an OpenSSH private key"),
            "{e}"
        );
    }

    #[test]
    fn a_key_file_that_cannot_be_read_names_the_field_and_the_file() {
        let cfg = crate::config::RuntimeConfig::parse(
            "baton.yaml",
            "repo:\n  url: /srv/config\n  signingKey: { file: /nonexistent/baton-signing }\n",
            [],
        )
        .unwrap();
        let e = CommitSigner::from_config(&cfg).unwrap_err().to_string();
        assert!(
            e.starts_with("repo.signingKey: cannot read secret file /nonexistent/baton-signing"),
            "{e}"
        );
        let none = crate::config::RuntimeConfig::parse("b", "repo:\n  url: /srv/config\n", []);
        assert!(CommitSigner::from_config(&none.unwrap()).unwrap().is_none());
    }

    #[test]
    fn debug_shows_the_fingerprint_never_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let key = keygen(dir.path(), "ed25519", "");
        let text = std::fs::read_to_string(&key).unwrap();
        let s = signer(&key).unwrap();
        let shown = format!("{s:?}");
        assert!(
            shown.contains("SHA256:") && shown.contains("ssh-ed25519"),
            "{shown}"
        );
        let body: String = text.lines().nth(2).unwrap().chars().take(20).collect();
        assert!(!shown.contains(&body), "{shown}");
        let listed = Command::new("ssh-keygen")
            .arg("-lf")
            .arg(&key)
            .output()
            .unwrap();
        assert!(
            String::from_utf8_lossy(&listed.stdout).contains(&s.fingerprint()),
            "the fingerprint is the one ssh-keygen shows"
        );
    }
}
