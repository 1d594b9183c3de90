//! Refuses documents with too many aliases. An alias lets one request run the
//! same field many times (`a1: login(...) a2: login(...) ...`), which would
//! turn one rate-limited request into many; depth and complexity limits alone
//! do not bound it for cheap fields.

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextParseQuery};
use async_graphql::parser::types::{ExecutableDocument, Selection, SelectionSet};
use async_graphql::{ServerError, ServerResult, Variables};
use std::sync::Arc;

/// The extension factory: at most `max` aliases per document.
pub struct AliasLimit {
    /// The most aliases a document may carry.
    pub max: usize,
}

impl ExtensionFactory for AliasLimit {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(AliasLimitExtension { max: self.max })
    }
}

struct AliasLimitExtension {
    max: usize,
}

#[async_trait::async_trait]
impl Extension for AliasLimitExtension {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let document = next.run(ctx, query, variables).await?;
        let count = aliases_in(&document);
        if count > self.max {
            let mut error = ServerError::new(format!("too many aliases: {count}, at most {}", self.max), None);
            error
                .extensions
                .get_or_insert_with(Default::default)
                .set("code", "BAD_USER_INPUT");
            return Err(error);
        }
        Ok(document)
    }
}

/// Aliases written in the document: every operation and every fragment
/// definition, each counted once (fragments spread many times multiply
/// fields, which the complexity limit bounds).
pub(crate) fn aliases_in(document: &ExecutableDocument) -> usize {
    let operations = document
        .operations
        .iter()
        .map(|(_, operation)| in_selection(&operation.node.selection_set.node))
        .sum::<usize>();
    let fragments = document
        .fragments
        .values()
        .map(|fragment| in_selection(&fragment.node.selection_set.node))
        .sum::<usize>();
    operations + fragments
}

fn in_selection(set: &SelectionSet) -> usize {
    set.items
        .iter()
        .map(|item| match &item.node {
            Selection::Field(field) => {
                usize::from(field.node.alias.is_some()) + in_selection(&field.node.selection_set.node)
            }
            Selection::InlineFragment(fragment) => in_selection(&fragment.node.selection_set.node),
            Selection::FragmentSpread(_) => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(query: &str) -> usize {
        aliases_in(&async_graphql::parser::parse_query(query).expect("parses"))
    }

    #[test]
    fn counts_aliases_in_operations_inline_fragments_and_fragments() {
        assert_eq!(count("{ me { id } }"), 0);
        assert_eq!(count("{ a: me { id } b: me { x: id } }"), 3);
        assert_eq!(count("{ ... on Query { a: me { id } } }"), 1);
        assert_eq!(
            count("query Q { ...F ...F } fragment F on Query { a: me { id } b: locations { id } }"),
            2
        );
    }
}
