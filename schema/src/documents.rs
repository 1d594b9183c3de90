//! Parsed GraphQL documents, kept by their text.
//!
//! Clients send the same few documents over and over with other variables
//! (the operations their code generator wrote). async-graphql's parser costs
//! about as much as executing a small query; cloning a parsed tree costs a
//! fraction of that. A document is parsed once and its tree (with what is
//! checked of it before execution: its alias count) is reused for every later
//! request with the same text. Only documents that parsed are kept, and only
//! up to a bound: a client sending endless distinct documents only refills
//! the cache.

use async_graphql::ServerError;
use async_graphql::parser::types::ExecutableDocument;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Documents kept at most; past it the cache starts over.
const MAX_DOCUMENTS: usize = 512;
/// Longer documents are parsed every time (they are rare and would crowd the cache).
const MAX_CACHED_LEN: usize = 16 * 1024;

/// A document that parsed, with what is known of it.
#[derive(Debug)]
pub struct Parsed {
    /// The syntax tree.
    pub document: ExecutableDocument,
    /// Aliases written in it (see [`crate::alias_limit`]).
    pub aliases: usize,
}

/// The cache.
#[derive(Debug, Default)]
pub struct Documents {
    parsed: Mutex<HashMap<String, Arc<Parsed>>>,
}

impl Documents {
    /// The parsed form of `query`, from the cache or the parser.
    pub fn parse(&self, query: &str) -> Result<Arc<Parsed>, ServerError> {
        if let Some(parsed) = self.with(|parsed| parsed.get(query).cloned()) {
            return Ok(parsed);
        }
        let document = async_graphql::parser::parse_query(query)?;
        let aliases = crate::alias_limit::aliases_in(&document);
        let parsed = Arc::new(Parsed { document, aliases });
        if query.len() <= MAX_CACHED_LEN {
            self.with(|cached| {
                if cached.len() >= MAX_DOCUMENTS {
                    cached.clear();
                }
                cached.insert(query.to_owned(), parsed.clone());
            });
        }
        Ok(parsed)
    }

    fn with<T>(&self, f: impl FnOnce(&mut HashMap<String, Arc<Parsed>>) -> T) -> T {
        let mut parsed = self.parsed.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut parsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Documents {
        fn len(&self) -> usize {
            self.with(|parsed| parsed.len())
        }
    }

    #[test]
    fn a_document_is_parsed_once_and_errors_are_not_kept() {
        let documents = Documents::default();
        let first = documents.parse("{ a: me { id } }").expect("parses");
        let again = documents.parse("{ a: me { id } }").expect("parses");
        assert!(Arc::ptr_eq(&first, &again), "the second request reuses the tree");
        assert_eq!(first.aliases, 1);
        assert!(documents.parse("{ me { id ").is_err());
        assert_eq!(documents.len(), 1, "a document that failed to parse is not kept");
    }

    #[test]
    fn the_cache_is_bounded() {
        let documents = Documents::default();
        for i in 0..MAX_DOCUMENTS + 10 {
            documents.parse(&format!("{{ a{i}: me {{ id }} }}")).expect("parses");
        }
        assert!(documents.len() <= MAX_DOCUMENTS);
        let huge = format!("{{ {} }}", "me { id } ".repeat(MAX_CACHED_LEN / 10 + 1));
        documents.parse(&huge).expect("parses");
        assert!(
            documents.with(|parsed| !parsed.contains_key(&huge)),
            "long documents are not kept"
        );
    }
}
