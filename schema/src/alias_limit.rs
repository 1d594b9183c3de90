//! Refuses documents with too many aliases. An alias lets one request run the
//! same field many times (`a1: login(...) a2: login(...) ...`), which would
//! turn one rate-limited request into many; depth and complexity limits alone
//! do not bound it for cheap fields.

use async_graphql::ServerError;
use async_graphql::parser::types::{ExecutableDocument, Selection, SelectionSet};

/// The refusal of a document with `count` aliases when `max` are allowed
/// (the contract code is filled in with the other input errors).
pub(crate) fn too_many(count: usize, max: usize) -> ServerError {
    ServerError::new(format!("too many aliases: {count}, at most {max}"), None)
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
