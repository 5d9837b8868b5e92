//! The DHT's record store: libp2p-kad's memory store, answering each request for
//! providers with a fresh random sample of those it holds.
//!
//! libp2p-kad 0.49 puts at most k (the replication factor, 20) providers in an answer to
//! `GET_PROVIDERS`: the first k its store returns. The memory store returns them in the
//! order they arrived, so every node closest to a key would answer with the same k, and a
//! country with more than k gateways of a kind would show callers the same k forever (the
//! `country` simulation found 14 to 24 of 20 to 26 gateways). Here each answer is a random
//! k of the up to `dht.max_providers_per_key` held, and a lookup, which hears from the k
//! nodes closest to the key, sees them all: with 64 held, the chance that a provider is in
//! none of 20 answers is (44/64)^20, under 0.1 %.

use std::borrow::Cow;

use libp2p::PeerId;
use libp2p::kad::store::{MemoryStore, MemoryStoreConfig, RecordStore, Result};
use libp2p::kad::{ProviderRecord, Record, RecordKey};
use rand::seq::SliceRandom;

/// A [`MemoryStore`] whose provider lists come out shuffled.
pub struct Store {
    inner: MemoryStore,
}

impl Store {
    /// An empty store for the node `local_id`.
    pub fn new(local_id: PeerId, config: MemoryStoreConfig) -> Store {
        Store {
            inner: MemoryStore::with_config(local_id, config),
        }
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

impl RecordStore for Store {
    type RecordsIter<'a> = <MemoryStore as RecordStore>::RecordsIter<'a>;
    type ProvidedIter<'a> = <MemoryStore as RecordStore>::ProvidedIter<'a>;

    fn get(&self, key: &RecordKey) -> Option<Cow<'_, Record>> {
        self.inner.get(key)
    }

    fn put(&mut self, record: Record) -> Result<()> {
        self.inner.put(record)
    }

    fn remove(&mut self, key: &RecordKey) {
        self.inner.remove(key);
    }

    fn records(&self) -> Self::RecordsIter<'_> {
        self.inner.records()
    }

    fn add_provider(&mut self, record: ProviderRecord) -> Result<()> {
        self.inner.add_provider(record)
    }

    fn providers(&self, key: &RecordKey) -> Vec<ProviderRecord> {
        let mut providers = self.inner.providers(key);
        providers.shuffle(&mut rand::rng());
        providers
    }

    fn provided(&self) -> Self::ProvidedIter<'_> {
        self.inner.provided()
    }

    fn remove_provider(&mut self, key: &RecordKey, provider: &PeerId) {
        self.inner.remove_provider(key, provider);
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    fn store_with_providers(count: usize) -> (Store, RecordKey) {
        let config = MemoryStoreConfig {
            max_providers_per_key: 64,
            ..MemoryStoreConfig::default()
        };
        let mut store = Store::new(PeerId::random(), config);
        let key = RecordKey::new(b"/interlink/providers/1/webrtc-pstn/44");
        for _ in 0..count {
            let record = ProviderRecord::new(key.clone(), PeerId::random(), Vec::new());
            store
                .add_provider(record)
                .unwrap_or_else(|e| panic!("add provider: {e}"));
        }
        (store, key)
    }

    #[test]
    fn every_provider_held_comes_out() {
        let (store, key) = store_with_providers(40);
        let providers = store.providers(&key);
        let distinct: HashSet<PeerId> = providers.iter().map(|p| p.provider).collect();
        assert_eq!(providers.len(), 40);
        assert_eq!(distinct.len(), 40);
    }

    #[test]
    fn twenty_answers_of_twenty_cover_forty_providers() {
        // What a lookup gathers from the k closest nodes when each answer carries k of
        // the providers (as libp2p-kad cuts them): all 40, where unshuffled answers would
        // carry the same 20 each time.
        let (store, key) = store_with_providers(40);
        let seen: HashSet<PeerId> = (0..20)
            .flat_map(|_| store.providers(&key).into_iter().take(20))
            .map(|p| p.provider)
            .collect();
        assert_eq!(seen.len(), 40);
    }
}
