//! What a resolver takes from the context: the services and the caller.

use async_graphql::Context;
use domain::{Caller, Services};

/// The per-request caller, put into the request data by the HTTP layer.
#[derive(Clone, Debug, Default)]
pub struct RequestCaller(pub Caller);

/// The services of the schema.
pub fn services<'a>(ctx: &Context<'a>) -> &'a Services {
    ctx.data_unchecked::<Services>()
}

/// The caller of this request; anonymous when the HTTP layer put none.
pub fn caller<'a>(ctx: &Context<'a>) -> &'a Caller {
    static ANONYMOUS: std::sync::LazyLock<Caller> = std::sync::LazyLock::new(Caller::default);
    ctx.data_opt::<RequestCaller>().map_or(&ANONYMOUS, |c| &c.0)
}
