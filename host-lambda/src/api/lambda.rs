//! Running the same router as an AWS Lambda function (API Gateway HTTP API events).

use lambda_http::RequestExt;
use lambda_http::request::RequestContext;

use crate::auth::{Caller, SERVICE_SCOPE};
use crate::record::validate_id;

/// Serve `app` as a Lambda function until the runtime stops it.
pub async fn run(app: axum::Router) -> Result<(), lambda_http::Error> {
    lambda_http::run(app).await
}

/// The caller as API Gateway's JWT authorizer already verified it: `sub` is the user; the
/// `images:service` scope (in `scopes` or the `scope` claim) may act for any user. Only
/// consulted when the deployment says to trust the authorizer.
pub fn authorizer_caller(extensions: &axum::http::Extensions) -> Option<Caller> {
    let RequestContext::ApiGatewayV2(context) = extensions.request_context_ref()? else {
        return None;
    };
    let jwt = context.authorizer.as_ref()?.jwt.as_ref()?;
    let user_id = validate_id("sub", jwt.claims.get("sub")?).ok()?;
    let in_scopes = jwt
        .scopes
        .as_ref()
        .is_some_and(|scopes| scopes.iter().any(|s| s == SERVICE_SCOPE));
    let in_claim = jwt
        .claims
        .get("scope")
        .is_some_and(|scope| scope.split(' ').any(|s| s == SERVICE_SCOPE));
    Some(Caller {
        user_id,
        is_service: in_scopes || in_claim,
    })
}
