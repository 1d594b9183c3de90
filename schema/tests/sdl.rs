//! The committed SDL is the truth codegen users see: it must match the code,
//! and it must keep every promise of the client contract.
//!
//! Regenerate the file with `CARESLOT_UPDATE_SDL=1 cargo test -p schema --test sdl`.

use async_graphql::parser::parse_schema;
use async_graphql::parser::types::{InputValueDefinition, TypeKind, TypeSystemDefinition};
use std::collections::BTreeSet;
use std::path::PathBuf;

fn crate_file(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(name)
}

#[test]
fn committed_sdl_matches_the_code() {
    let generated = schema::sdl();
    let path = crate_file("schema.graphql");
    if std::env::var_os("CARESLOT_UPDATE_SDL").is_some() {
        std::fs::write(&path, &generated).expect("write schema.graphql");
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "schema/schema.graphql is stale: run CARESLOT_UPDATE_SDL=1 cargo test -p schema --test sdl"
    );
}

/// Every promise of an SDL document, one line each: types, fields with their
/// types, arguments with types and defaults, enum values.
fn facts(sdl: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let doc = parse_schema(sdl).expect("SDL parses");
    let mut facts = BTreeSet::new();
    // Arguments and input fields that a client may omit (nullable or defaulted).
    let mut optional_inputs = BTreeSet::new();
    let mut input = |owner: &str, value: &InputValueDefinition, facts: &mut BTreeSet<String>| {
        let default = value
            .default_value
            .as_ref()
            .map(|d| format!(" = {}", d.node))
            .unwrap_or_default();
        facts.insert(format!("{owner}: {}{default}", value.ty.node));
        if value.ty.node.nullable || value.default_value.is_some() {
            optional_inputs.insert(owner.to_owned());
        }
    };
    for definition in &doc.definitions {
        let TypeSystemDefinition::Type(ty) = definition else {
            continue;
        };
        let name = ty.node.name.node.as_str();
        match &ty.node.kind {
            TypeKind::Scalar => {
                facts.insert(format!("scalar {name}"));
            }
            TypeKind::Object(object) => {
                facts.insert(format!("type {name}"));
                for field in &object.fields {
                    let field_name = format!("{name}.{}", field.node.name.node);
                    facts.insert(format!("{field_name}: {}", field.node.ty.node));
                    for arg in &field.node.arguments {
                        input(&format!("{field_name}({})", arg.node.name.node), &arg.node, &mut facts);
                    }
                }
            }
            TypeKind::InputObject(object) => {
                facts.insert(format!("input {name}"));
                for field in &object.fields {
                    input(&format!("{name}.{}", field.node.name.node), &field.node, &mut facts);
                }
            }
            TypeKind::Enum(e) => {
                facts.insert(format!("enum {name}"));
                for value in &e.values {
                    facts.insert(format!("enum {name}.{}", value.node.value.node));
                }
            }
            TypeKind::Interface(_) | TypeKind::Union(_) => {
                facts.insert(format!("type {name}"));
            }
        }
    }
    (facts, optional_inputs)
}

/// Contract types and operations still being built, by name (a type or
/// `Root.field`). The test fails once all of a name's promises exist, so the
/// list can only shrink; it is empty now that the whole contract is served.
const PENDING: &[&str] = &[];

/// The type or `Root.field` a fact speaks of.
fn subject(fact: &str) -> &str {
    let fact = ["type ", "input ", "enum ", "scalar "]
        .iter()
        .find_map(|p| fact.strip_prefix(p))
        .unwrap_or(fact);
    let end = fact.find(['(', ':']).unwrap_or(fact.len());
    let path = &fact[..end];
    match path.split_once('.') {
        Some((root, _)) if ["Query", "Mutation", "Subscription"].contains(&root) => path,
        Some((ty, _)) => ty,
        None => path,
    }
}

#[test]
fn schema_keeps_every_promise_of_the_contract() {
    let contract = std::fs::read_to_string(crate_file("contract.graphql")).expect("contract.graphql");
    let (promised, _) = facts(&contract);
    let (ours, optional) = facts(&schema::sdl());
    let missing: Vec<&String> = promised.difference(&ours).collect();
    let unexpected: Vec<&&String> = missing.iter().filter(|m| !PENDING.contains(&subject(m))).collect();
    assert!(
        unexpected.is_empty(),
        "the schema breaks the contract; missing:\n{unexpected:#?}"
    );
    let arrived: Vec<&&str> = PENDING
        .iter()
        .filter(|name| !missing.iter().any(|m| subject(m) == **name))
        .collect();
    assert!(
        arrived.is_empty(),
        "remove from PENDING, they are complete now: {arrived:?}"
    );

    // What we add must not break a client that only knows the contract: a new
    // argument or input field must be optional.
    let required_additions: Vec<&String> = ours
        .iter()
        .filter(|fact| !promised.contains(*fact))
        .filter(|fact| {
            let Some((owner, _)) = fact.split_once(": ") else {
                return false;
            };
            let contract_owner = match owner.split_once('(') {
                // An argument of a field the contract has.
                Some((field, _)) => promised.iter().any(|p| p.starts_with(&format!("{field}: "))),
                // A field of an input type the contract has.
                None => owner
                    .split_once('.')
                    .is_some_and(|(ty, _)| promised.contains(&format!("input {ty}"))),
            };
            contract_owner && !optional.contains(owner)
        })
        .collect();
    assert!(
        required_additions.is_empty(),
        "new required inputs break contract clients: {required_additions:#?}"
    );
}

#[test]
fn the_contract_copy_matches_shared() {
    let shared = crate_file("../../shared/contract.graphql");
    if let Ok(text) = std::fs::read_to_string(&shared) {
        let copy = std::fs::read_to_string(crate_file("contract.graphql")).expect("contract.graphql");
        assert_eq!(
            copy, text,
            "schema/contract.graphql differs from shared/contract.graphql: copy it again"
        );
    }
}
