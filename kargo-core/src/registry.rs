//! The name-keyed map behind [`crate::step::StepRegistry`] and
//! [`crate::source::SourceRegistry`].

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// A name is registered twice.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is already registered")]
pub struct DuplicateStep(pub String);

/// Objects by name; registering a taken name is an error.
pub(crate) struct Named<T: ?Sized> {
    items: BTreeMap<String, Arc<T>>,
}

impl<T: ?Sized> Clone for Named<T> {
    fn clone(&self) -> Self {
        Self {
            items: self.items.clone(),
        }
    }
}

impl<T: ?Sized> Default for Named<T> {
    fn default() -> Self {
        Self {
            items: BTreeMap::new(),
        }
    }
}

impl<T: ?Sized> fmt::Debug for Named<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.items.keys()).finish()
    }
}

impl<T: ?Sized> Named<T> {
    pub(crate) fn insert(&mut self, name: String, item: Arc<T>) -> Result<(), DuplicateStep> {
        if self.items.contains_key(&name) {
            return Err(DuplicateStep(name));
        }
        self.items.insert(name, item);
        Ok(())
    }

    pub(crate) fn get(&self, name: &str) -> Option<&Arc<T>> {
        self.items.get(name)
    }

    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        self.items.keys().map(String::as_str)
    }
}
