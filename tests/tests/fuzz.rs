//! Whatever arrives at `POST /graphql` (arbitrary documents, arbitrary values
//! for typed arguments) gets a GraphQL answer whose errors carry a contract code,
//! never a panic, never INTERNAL, never a 5xx.

use careslot_tests::{Backend, TestApp};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Value, json};

fn check(response: &Value) -> Result<(), TestCaseError> {
    if let Some(errors) = response["errors"].as_array() {
        for error in errors {
            let code = error["extensions"]["code"].as_str().unwrap_or("");
            prop_assert!(!code.is_empty(), "error without a code: {}", response);
            prop_assert_ne!(code, "INTERNAL", "{}", response);
        }
    }
    Ok(())
}

#[test]
fn arbitrary_requests_get_coded_answers() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (app, token) = runtime.block_on(async {
        let app = TestApp::spawn(Backend::Sqlite).await;
        let token = app.admin().await;
        (app, token)
    });
    let mut runner = TestRunner::new(Config {
        cases: 400,
        failure_persistence: None,
        ..Config::default()
    });
    let documents = prop_oneof![
        any::<String>(),
        "\\{ [a-zA-Z_ {}():$!\"0-9,]{0,80} \\}",
        Just("{ a: me { id } b: me { id } }".to_owned()),
    ];
    runner
        .run(&documents, |document| {
            let response = runtime.block_on(app.post_json("/graphql", Some(&token), &json!({ "query": document })));
            prop_assert_eq!(response.0, 200);
            check(&response.1)
        })
        .expect("every document answered with coded errors");

    // Typed arguments with arbitrary values: ids, instants, dates, times, zones.
    let values = prop_oneof![
        any::<String>().prop_map(Value::String),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|n| json!(n)),
        Just(Value::Null),
        Just(json!([1, "x", null])),
        Just(json!({ "nested": true })),
    ];
    let operations = [
        ("query($v: UUID!) { patient(id: $v) { id } }", "v"),
        (
            "mutation($v: String!) { createLocation(input: { name: \"x\", timeZone: $v }) { id } }",
            "v",
        ),
        (
            "query($v: DateTime!) { availableSlots(input: { appointmentTypeId: \"00000000-0000-0000-0000-000000000000\", from: $v, to: $v }) { start } }",
            "v",
        ),
        (
            "mutation($v: Date!) { createPatient(input: { name: \"x\", birthDate: $v }) { id } }",
            "v",
        ),
        (
            "mutation($v: String!) { setWeeklyAvailability(providerId: \"00000000-0000-0000-0000-000000000000\", locationId: \"00000000-0000-0000-0000-000000000000\", rules: [{ weekday: 1, startTime: $v, endTime: \"10:00\" }]) { id } }",
            "v",
        ),
        ("query($v: Int) { providers(first: $v) { edges { cursor } } }", "v"),
        (
            "query($v: String) { patients(search: $v, after: $v) { edges { cursor } } }",
            "v",
        ),
    ];
    runner
        .run(&(0..operations.len(), values), |(index, value)| {
            let (query, name) = operations[index];
            let body = json!({ "query": query, "variables": { name: value } });
            let response = runtime.block_on(app.post_json("/graphql", Some(&token), &body));
            prop_assert_eq!(response.0, 200);
            check(&response.1)
        })
        .expect("every value answered with coded errors");
}
