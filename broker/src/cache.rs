//! Watch caches of the objects the broker serves, in the namespaces it serves: one watch per
//! namespace of its `--namespace` list (it has rights there only), or one over every
//! namespace without a list. Imports no other module of the crate.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};

/// A watch cache of every `K` in some namespaces.
pub struct Cache<K>
where
    K: kube::Resource<DynamicType = ()> + Clone + 'static,
{
    /// One store per watched namespace (`None`: every namespace).
    stores: Vec<(Option<String>, Store<K>)>,
    listed: Vec<Arc<AtomicBool>>,
}

impl<K> Cache<K>
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    /// Watches `K` in `namespaces` (every namespace when empty); `seen` is told each object
    /// the watch brings (changed, or listed again) and each deleted one (`true`), after the
    /// cache has it. `what` names the objects in logs.
    pub fn watch(
        client: &Client,
        namespaces: &[String],
        what: &'static str,
        seen: impl Fn(&K, bool) + Send + Sync + 'static,
    ) -> Self {
        let seen = Arc::new(seen);
        let apis: Vec<(Option<String>, Api<K>)> = if namespaces.is_empty() {
            vec![(None, Api::all(client.clone()))]
        } else {
            namespaces
                .iter()
                .map(|ns| (Some(ns.clone()), Api::namespaced(client.clone(), ns)))
                .collect()
        };
        let mut stores = Vec::with_capacity(apis.len());
        let mut listed = Vec::with_capacity(apis.len());
        for (namespace, api) in apis {
            let done = Arc::new(AtomicBool::new(false));
            let store = watch_one(api, Arc::clone(&done), what, Arc::clone(&seen));
            stores.push((namespace, store));
            listed.push(done);
        }
        Self { stores, listed }
    }
}

impl<K> Cache<K>
where
    K: kube::Resource<DynamicType = ()> + Clone + 'static,
{
    /// Every cached object.
    pub fn state(&self) -> Vec<Arc<K>> {
        self.stores.iter().flat_map(|(_, s)| s.state()).collect()
    }

    /// The object `name` in `namespace`, as last seen.
    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<K>> {
        let key = ObjectRef::new(name).within(namespace);
        self.stores
            .iter()
            .filter(|(ns, _)| ns.as_deref().is_none_or(|ns| ns == namespace))
            .find_map(|(_, s)| s.get(&key))
    }

    /// Whether every watch has had its first list.
    pub fn listed(&self) -> bool {
        self.listed.iter().all(|l| l.load(Ordering::Acquire))
    }
}

fn watch_one<K>(
    api: Api<K>,
    listed: Arc<AtomicBool>,
    what: &'static str,
    seen: Arc<impl Fn(&K, bool) + Send + Sync + 'static>,
) -> Store<K>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (store, writer) = reflector::store();
    let stream =
        reflector::reflector(writer, watcher(api, watcher::Config::default())).default_backoff();
    tokio::spawn(async move {
        stream
            .for_each(|event| {
                match event {
                    Ok(watcher::Event::InitDone) => listed.store(true, Ordering::Release),
                    Ok(watcher::Event::Apply(object) | watcher::Event::InitApply(object)) => {
                        seen(&object, false)
                    }
                    Ok(watcher::Event::Delete(object)) => seen(&object, true),
                    Ok(watcher::Event::Init) => {}
                    Err(e) => tracing::warn!(error = %e, "watch of {what} failed; retrying"),
                }
                std::future::ready(())
            })
            .await;
    });
    store
}
