//! `GET /v1/usage?from=&to=&group_by=day|model|key|user&user=&all=true`: usage and cost from
//! the ledger. The route's action (`usage:read`) is authorized on the account read (the
//! caller's unless `user=` names another); `all=true` also needs `usage:read_all`.

use crate::body::Body;
use crate::errors::ApiError;
use crate::handlers::{Ctx, json};
use crate::resource::Target;
use crate::usage::period;
use crate::usage::report::{self, GroupBy};
use crate::usage::store::Query;
use http::{Response, StatusCode};

/// Longest period one report covers.
pub const MAX_DAYS: i64 = 366;

fn bad(param: &str, message: String) -> ApiError {
    ApiError::bad_request("invalid_value", message).with_param(param)
}

/// The report.
pub async fn report(ctx: &Ctx<'_>) -> Result<Response<Body>, ApiError> {
    let Some(identity) = ctx.identity else {
        return Err(ApiError::internal(&"usage route without a caller"));
    };
    let Target::Account { username, .. } = ctx.target else {
        return Err(ApiError::internal(&"usage route without an account target"));
    };
    let mut from = None;
    let mut to = None;
    let mut group_by = GroupBy::Day;
    let mut all = false;
    let mut named_user = false;
    for (k, v) in form_urlencoded::parse(ctx.query.unwrap_or_default().as_bytes()) {
        match &*k {
            "from" | "to" => {
                let day = period::parse_day(&v)
                    .ok_or_else(|| bad(&k, format!("`{v}` is not a date (YYYY-MM-DD)")))?;
                if k == "from" {
                    from = Some(day);
                } else {
                    to = Some(day);
                }
            }
            "group_by" => {
                group_by = GroupBy::parse(&v).ok_or_else(|| {
                    bad(
                        "group_by",
                        format!("`{v}` is not one of `day`, `model`, `key`, `user`"),
                    )
                })?;
            }
            "all" => {
                all = match &*v {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    _ => return Err(bad("all", format!("`{v}` is not `true` or `false`"))),
                }
            }
            "user" => named_user = true,
            _ => {}
        }
    }
    let now = crate::directory::now();
    let to = to.unwrap_or(now);
    let from = from.unwrap_or_else(|| {
        period::parse_day(&period::month_start(to)).unwrap_or(to - to.rem_euclid(period::DAY))
    });
    if from > to {
        return Err(bad("from", "`from` is after `to`".to_string()));
    }
    if (to - from) / period::DAY >= MAX_DAYS {
        return Err(bad(
            "from",
            format!("a report covers at most {MAX_DAYS} days"),
        ));
    }
    if all && named_user {
        return Err(bad(
            "all",
            "give either `user` or `all=true`, not both".to_string(),
        ));
    }
    if all
        && !ctx
            .engine
            .may_on_api(identity, "usage:read_all", "usage", ctx.facts)
    {
        return Err(ApiError::forbidden(
            "you are not permitted to perform `usage:read_all`",
        ));
    }
    let query = Query {
        from: period::day(from),
        to: period::day(to),
        user: (!all).then(|| username.clone()),
    };
    let rows = ctx.engine.ledger().query(&query).await.map_err(|e| {
        tracing::error!(target: "pennyworth::usage", error = %e, "usage query failed");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            crate::errors::ErrorKind::ServerError,
            "usage_unavailable",
            "the usage ledger is unavailable; retry shortly",
        )
    })?;
    let body = report::to_json(
        &rows,
        group_by,
        &query.from,
        &query.to,
        query.user.as_deref(),
    )
    .map_err(|e| ApiError::internal(&e))?;
    json(StatusCode::OK, &body)
}
