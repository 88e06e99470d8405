//! API discovery with a cache: which resource (plural, scope) serves a `group/version` kind.
//! Built-in and custom kinds resolve the same way. The cache lives as long as the
//! [`super::Context`], so a resync of an unchanged environment makes no discovery calls; a
//! miss is looked up again (a CRD may have been installed since), and a group-version is
//! forgotten when its CRD is applied or an object of it turns out to be missing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use kube::Client;
use kube::core::{ApiResource, GroupVersion};
use kube::discovery::{ApiCapabilities, Scope};

use super::object::split_api_version;

/// A resolved kind.
#[derive(Debug, Clone)]
pub struct Kind {
    pub resource: ApiResource,
    pub namespaced: bool,
}

type Resources = Arc<Vec<(ApiResource, ApiCapabilities)>>;

#[derive(Default)]
pub struct Discovery {
    cache: Mutex<HashMap<String, Resources>>,
}

impl Discovery {
    /// The resource serving `kind` in `api_version`, or `None` if the server does not serve
    /// it (yet).
    pub async fn resolve(
        &self,
        client: &Client,
        api_version: &str,
        kind: &str,
    ) -> Result<Option<Kind>, kube::Error> {
        if let Some(found) = self.cached(api_version).and_then(|r| find(&r, kind)) {
            return Ok(Some(found));
        }
        let Some(resources) = self.fetch(client, api_version).await? else {
            return Ok(None);
        };
        Ok(find(&resources, kind))
    }

    /// Forget what was discovered for `api_version`.
    pub fn forget(&self, api_version: &str) {
        self.lock().remove(api_version);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Resources>> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn cached(&self, api_version: &str) -> Option<Resources> {
        self.lock().get(api_version).cloned()
    }

    async fn fetch(
        &self,
        client: &Client,
        api_version: &str,
    ) -> Result<Option<Resources>, kube::Error> {
        let (group, version) = split_api_version(api_version);
        let gv = GroupVersion::gv(group, version);
        match kube::discovery::pinned_group(client, &gv).await {
            Ok(g) => {
                let resources = Arc::new(g.versioned_resources(version));
                self.lock()
                    .insert(api_version.to_string(), resources.clone());
                Ok(Some(resources))
            }
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(None),
            Err(e) => Err(e),
        }
    }
}

fn find(resources: &[(ApiResource, ApiCapabilities)], kind: &str) -> Option<Kind> {
    resources
        .iter()
        .find(|(r, _)| r.kind == kind)
        .map(|(r, caps)| Kind {
            resource: r.clone(),
            namespaced: caps.scope == Scope::Namespaced,
        })
}
