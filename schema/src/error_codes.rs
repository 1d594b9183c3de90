//! Gives every error a contract code. Errors raised by resolvers carry one
//! already; what is left comes from async-graphql itself (parse and validation
//! errors, malformed scalars such as a bad UUID, depth and complexity limits),
//! all of which are the caller's input: `BAD_USER_INPUT`, with the argument
//! named in `extensions.field` when the message names one.

use async_graphql::{Response, ServerError, Value};

/// Gives every error of `response` a contract code.
pub(crate) fn add_codes(response: &mut Response) {
    for error in &mut response.errors {
        add_code(error);
    }
}

pub(crate) fn add_code(error: &mut ServerError) {
    let has_code = error.extensions.as_ref().is_some_and(|ext| ext.get("code").is_some());
    if has_code {
        return;
    }
    let field = argument_named_in(&error.message);
    let ext = error.extensions.get_or_insert_with(Default::default);
    ext.set("code", Value::from("BAD_USER_INPUT"));
    if let Some(field) = field {
        ext.set("field", Value::from(field));
    }
}

/// async-graphql names the argument in messages such as
/// `Invalid value for argument "input.timeZone", ...` or
/// `Failed to parse "UUID": ... (occurred while parsing "id")`.
fn argument_named_in(message: &str) -> Option<String> {
    for marker in ["for argument \"", "parsing \"", "variable \"$"] {
        if let Some(start) = message.find(marker) {
            let rest = &message[start + marker.len()..];
            if let Some(end) = rest.find('"') {
                return Some(rest[..end].to_owned());
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_argument() {
        assert_eq!(
            argument_named_in("Invalid value for argument \"input.timeZone\", expected type \"String\"").as_deref(),
            Some("input.timeZone")
        );
        assert_eq!(argument_named_in("Query is nested too deep."), None);
    }

    #[test]
    fn fills_in_a_missing_code_and_keeps_an_existing_one() {
        let mut plain = ServerError::new("Invalid value for argument \"id\"", None);
        add_code(&mut plain);
        let ext = plain.extensions.expect("extensions");
        assert_eq!(ext.get("code"), Some(&Value::from("BAD_USER_INPUT")));
        assert_eq!(ext.get("field"), Some(&Value::from("id")));

        let mut coded = ServerError::new("nope", None);
        coded
            .extensions
            .get_or_insert_with(Default::default)
            .set("code", "FORBIDDEN");
        add_code(&mut coded);
        assert_eq!(
            coded.extensions.expect("ext").get("code"),
            Some(&Value::from("FORBIDDEN"))
        );
    }
}
