//! Repository names: `registry.example.com/shop/web` split into the registry host and the
//! repository path, with Docker Hub's defaults (`nginx` is `docker.io/library/nginx`).

use std::fmt;

use serde::Serialize;

use super::error::RegistryError;

/// One repository on one registry.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Repo {
    /// Host and optional port, e.g. `registry.example.com` or `127.0.0.1:5000`.
    pub registry: String,
    /// Path inside the registry, e.g. `shop/web`.
    pub repository: String,
}

impl Repo {
    pub fn new(registry: impl Into<String>, repository: impl Into<String>) -> Self {
        Self {
            registry: registry.into(),
            repository: repository.into(),
        }
    }

    /// Parse an image name without tag or digest (a pipeline `image:`). A tag or digest, if
    /// present, is refused: the pipeline names repositories, the registry says which tags.
    pub fn parse(image: &str) -> Result<Self, RegistryError> {
        let invalid = |reason: &str| RegistryError::InvalidReference {
            reference: image.to_string(),
            reason: reason.to_string(),
        };
        if image.contains('@') {
            return Err(invalid("the image must not name a digest"));
        }
        let reference: oci_client::Reference = image
            .parse()
            .map_err(|e: oci_client::ParseError| invalid(&e.to_string()))?;
        let last = image.rsplit('/').next().unwrap_or(image);
        if last.contains(':') {
            return Err(invalid("the image must not name a tag"));
        }
        Ok(Self::new(reference.registry(), reference.repository()))
    }

    /// `repo:tag` or `repo@digest`, for messages.
    pub fn at(&self, reference: &str) -> String {
        if reference.contains(':') {
            format!("{self}@{reference}")
        } else {
            format!("{self}:{reference}")
        }
    }

    /// The last path segment (`web` for `shop/web`).
    pub fn name(&self) -> &str {
        self.repository
            .rsplit('/')
            .next()
            .unwrap_or(&self.repository)
    }
}

impl fmt::Display for Repo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)
    }
}

/// Where an environment's `copyTo` prefix puts an app's image: the prefix plus the source
/// repository's last segment (`prod.example.com/shop` + `…/team/web` → `prod.example.com/shop/web`).
pub fn copy_destination(copy_to: &str, source: &Repo) -> Result<Repo, RegistryError> {
    let prefix = copy_to.trim_end_matches('/');
    Repo::parse(&format!("{prefix}/{}", source.name()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_names_split_into_registry_and_repository() {
        assert_eq!(
            Repo::parse("registry.example.com/shop/web").unwrap(),
            Repo::new("registry.example.com", "shop/web")
        );
        assert_eq!(
            Repo::parse("127.0.0.1:5000/web").unwrap(),
            Repo::new("127.0.0.1:5000", "web")
        );
        assert_eq!(
            Repo::parse("nginx").unwrap(),
            Repo::new("docker.io", "library/nginx")
        );
    }

    #[test]
    fn tags_and_digests_in_a_pipeline_image_are_refused() {
        for bad in ["r.io/shop/web:1.0", "r.io/shop/web@sha256:abc", "Shop/Web"] {
            assert!(Repo::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn messages_name_repo_and_tag_or_digest() {
        let r = Repo::new("r.io", "shop/web");
        assert_eq!(r.at("1.2.3"), "r.io/shop/web:1.2.3");
        assert_eq!(r.at("sha256:ab"), "r.io/shop/web@sha256:ab");
    }

    #[test]
    fn copy_to_keeps_the_image_name_under_the_prefix() {
        let src = Repo::parse("registry.example.com/team/web").unwrap();
        assert_eq!(
            copy_destination("prod.example.com/shop/", &src).unwrap(),
            Repo::new("prod.example.com", "shop/web")
        );
    }
}
