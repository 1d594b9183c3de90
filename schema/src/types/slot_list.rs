//! The answer of `availableSlots`, written in one pass.
//!
//! A day's search answers dozens of slots, and async-graphql resolves an object
//! list item by item and field by field, each through its own future and
//! value conversions: that was a third of the instructions of a slot search
//! (callgrind, BENCHMARKS.md). A slot's fields are plain values, so the
//! selection is read once per request (aliases, fragments and `__typename`
//! included; `@skip`/`@include` were applied before execution) and every slot
//! is written from that plan. The declared type stays `[Slot!]!`: the type
//! information is `Vec<Slot>`'s, so the SDL and introspection do not change.

use super::{Slot, SlotStatus};
use async_graphql::parser::types::Field;
use async_graphql::registry::Registry;
use async_graphql::{Context, Name, OutputType, Positioned, ServerResult, Value};
use async_graphql::{ContextSelectionSet, indexmap::IndexMap};
use domain::scheduling as d;
use std::borrow::Cow;

/// One field of `Slot`, as a selection names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Part {
    ProviderId,
    Start,
    End,
    Status,
    Typename,
}

impl Part {
    /// Every field of `Slot` (a test holds this to the registered type).
    const FIELDS: [(&'static str, Part); 4] = [
        ("providerId", Part::ProviderId),
        ("start", Part::Start),
        ("end", Part::End),
        ("status", Part::Status),
    ];

    fn of(name: &str) -> Option<Self> {
        if name == "__typename" {
            return Some(Part::Typename);
        }
        Self::FIELDS
            .iter()
            .find(|(field, _)| *field == name)
            .map(|(_, part)| *part)
    }
}

/// Free slots with the selection they are asked with.
pub struct SlotList {
    /// Response key and field, in selection order.
    plan: Vec<(Name, Part)>,
    slots: Vec<d::Slot>,
}

impl SlotList {
    /// The slots as the current field (`availableSlots`) selects them.
    pub fn new(ctx: &Context<'_>, slots: Vec<d::Slot>) -> Self {
        let plan = ctx
            .field()
            .selection_set()
            .filter_map(|field| {
                // Validation let only fields of Slot through.
                let part = Part::of(field.name())?;
                Some((Name::new(field.alias().unwrap_or(field.name())), part))
            })
            .collect();
        Self { plan, slots }
    }

    fn write(&self) -> Value {
        let status = async_graphql::resolver_utils::enum_value(SlotStatus::Free);
        let typename = Value::String(<Slot as OutputType>::type_name().into_owned());
        // A search answers a handful of providers: their ids are written once each.
        let mut providers: Vec<(uuid::Uuid, Value)> = Vec::new();
        let mut provider = |id: uuid::Uuid| match providers.iter().find(|(p, _)| *p == id) {
            Some((_, value)) => value.clone(),
            None => {
                let value = Value::String(id.to_string());
                providers.push((id, value.clone()));
                value
            }
        };
        let items = self
            .slots
            .iter()
            .map(|slot| {
                let mut object = IndexMap::with_capacity(self.plan.len());
                for (key, part) in &self.plan {
                    let value = match part {
                        Part::ProviderId => provider(slot.provider_id.0),
                        Part::Start => Value::String(crate::rfc3339::format(&slot.start)),
                        Part::End => Value::String(crate::rfc3339::format(&slot.end)),
                        Part::Status => status.clone(),
                        Part::Typename => typename.clone(),
                    };
                    // A key selected twice keeps its first place, as async-graphql does.
                    object.insert(key.clone(), value);
                }
                Value::Object(object)
            })
            .collect();
        Value::List(items)
    }
}

impl OutputType for SlotList {
    fn type_name() -> Cow<'static, str> {
        <Vec<Slot> as OutputType>::type_name()
    }

    fn qualified_type_name() -> String {
        <Vec<Slot> as OutputType>::qualified_type_name()
    }

    fn create_type_info(registry: &mut Registry) -> String {
        <Vec<Slot> as OutputType>::create_type_info(registry)
    }

    async fn resolve(&self, _ctx: &ContextSelectionSet<'_>, _field: &Positioned<Field>) -> ServerResult<Value> {
        Ok(self.write())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_graphql::{EmptyMutation, EmptySubscription, Object, Schema};
    use chrono::{DateTime, Duration};

    fn slots() -> Vec<d::Slot> {
        let start = DateTime::parse_from_rfc3339("2026-11-30T09:00:00Z")
            .expect("time")
            .to_utc();
        let (a, b) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
        (0..5)
            .map(|i| d::Slot {
                provider_id: if i % 2 == 0 { a.into() } else { b.into() },
                start: start + Duration::minutes(30 * i) + Duration::milliseconds(i * 250),
                end: start + Duration::minutes(30 * (i + 1)),
            })
            .collect()
    }

    struct Query;

    #[Object]
    impl Query {
        /// async-graphql's own resolution.
        async fn derived(&self) -> Vec<Slot> {
            slots_fixed().iter().map(Slot::from).collect()
        }

        /// The one-pass writer.
        async fn written(&self, ctx: &Context<'_>) -> SlotList {
            SlotList::new(ctx, slots_fixed().to_vec())
        }
    }

    fn slots_fixed() -> &'static [d::Slot] {
        static SLOTS: std::sync::OnceLock<Vec<d::Slot>> = std::sync::OnceLock::new();
        SLOTS.get_or_init(slots)
    }

    #[tokio::test]
    async fn writes_what_async_graphql_resolves_for_any_selection() {
        let schema = Schema::new(Query, EmptyMutation, EmptySubscription);
        for selection in [
            "{ providerId start end status }",
            "{ status end }",
            "{ __typename from: start to: end start }",
            "{ start start end: start }",
            "{ ...F end ... on Slot { providerId st: status } }",
            "{ ... { start } ...F @skip(if: $no) ...F @include(if: $no) status @include(if: $yes) end @skip(if: $yes) }",
        ] {
            // Strict validation refuses unused variables and fragments.
            let variables = if selection.contains('$') {
                "($yes: Boolean = true, $no: Boolean = false)"
            } else {
                ""
            };
            let fragment = if selection.contains("...F") {
                "fragment F on Slot { start __typename providerId }"
            } else {
                ""
            };
            let query = format!("query{variables} {{ derived {selection} written {selection} }} {fragment}");
            let response = schema.execute(query.as_str()).await;
            assert!(response.errors.is_empty(), "{query}: {:?}", response.errors);
            let data = response.data.into_json().expect("json");
            assert_eq!(
                serde_json::to_string(&data["written"]).expect("text"),
                serde_json::to_string(&data["derived"]).expect("text"),
                "{selection}"
            );
        }
    }

    #[test]
    fn every_field_of_slot_is_written() {
        let sdl = crate::sdl();
        let document = async_graphql::parser::parse_schema(&sdl).expect("SDL parses");
        let fields: Vec<String> = document
            .definitions
            .iter()
            .find_map(|definition| match definition {
                async_graphql::parser::types::TypeSystemDefinition::Type(ty) if ty.node.name.node == "Slot" => {
                    match &ty.node.kind {
                        async_graphql::parser::types::TypeKind::Object(object) => {
                            Some(object.fields.iter().map(|f| f.node.name.node.to_string()).collect())
                        }
                        _ => None,
                    }
                }
                _ => None,
            })
            .expect("type Slot");
        let written: Vec<String> = Part::FIELDS.iter().map(|(name, _)| (*name).to_owned()).collect();
        assert_eq!(fields, written, "a field added to Slot must be written by SlotList");
    }
}
