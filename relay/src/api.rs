//! The HTTP API under `/api` (see docs/API.md): a public study list, and the admin routes
//! behind the bearer token.

use std::fmt::Write as _;

use cohort_core::error::StudyError;
use cohort_core::study::StudySpec;
use serde::Deserialize;
use tracing::{info, warn};

use crate::http::{Request, Response};
use crate::registry::{Acquired, CreateError, Registry};
use crate::token::AdminToken;
use crate::views::ResultRow;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    spec: String,
}

/// The study in a `POST /api/studies` body: `{"spec": "<text form>"}`, or the study's JSON
/// form itself (`--study-file`'s, [`StudySpec::from_json`]). A refusal is the 400 message:
/// the JSON form's names the key (and a bad or too long questionnaire the question).
pub fn parse_create_body(body: &[u8]) -> Result<StudySpec, String> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|_| {
        "body must be a study's JSON form or {\"spec\": \"<study spec>\"}".to_string()
    })?;
    if value.as_object().is_some_and(|o| o.contains_key("spec")) {
        let body: CreateBody = serde_json::from_value(value)
            .map_err(|_| "body must be {\"spec\": \"<study spec>\"}".to_string())?;
        return body.spec.parse().map_err(|e: StudyError| e.to_string());
    }
    let text = std::str::from_utf8(body).map_err(|_| "body must be UTF-8".to_string())?;
    StudySpec::from_json(text).map_err(|e| match e.key() {
        Some(key) => format!("key `{key}`: {e}"),
        None => e.to_string(),
    })
}

fn not_found(what: &str) -> Response {
    Response::error(404, &format!("{what} not found"))
}

fn method_not_allowed(allow: &str) -> Response {
    Response::error(405, "method not allowed").with_header("Allow", allow)
}

fn internal(e: impl std::fmt::Display) -> Response {
    warn!(error = %e, "API request failed");
    Response::error(500, "internal error")
}

/// Answers a request whose path starts with `/api`.
pub async fn handle(registry: &Registry, token: &AdminToken, req: &Request) -> Response {
    let path = req.path.trim_end_matches('/');
    let segs: Vec<&str> = path.split('/').skip(2).collect(); // after "" and "api"
    let method = req.method.as_str();
    match segs.as_slice() {
        ["public", "studies"] => match method {
            "GET" | "HEAD" => {
                let list: Vec<_> = registry
                    .statuses()
                    .await
                    .iter()
                    .map(|s| s.public())
                    .collect();
                Response::json(200, &list)
            }
            _ => method_not_allowed("GET, HEAD"),
        },
        ["studies", rest @ ..] => {
            if !token.verify_bearer(req.header("authorization")) {
                return Response::error(401, "missing or wrong admin token")
                    .with_header("WWW-Authenticate", "Bearer");
            }
            admin(registry, method, rest, req).await
        }
        _ => not_found("API route"),
    }
}

async fn admin(registry: &Registry, method: &str, rest: &[&str], req: &Request) -> Response {
    let get = method == "GET" || method == "HEAD";
    match rest {
        [] => match method {
            "GET" | "HEAD" => Response::json(200, &registry.statuses().await),
            "POST" => create(registry, req).await,
            _ => method_not_allowed("GET, HEAD, POST"),
        },
        [id, tail @ ..] => {
            // With several relays the study may run on another one: what is stored is
            // answered from the database, "start" takes the study's lease if it is free.
            let local = registry.get(id);
            if local.is_none() {
                match registry.store().study(id).await {
                    Ok(Some(_)) => {}
                    Ok(None) => return not_found("study"),
                    Err(e) => return internal(e),
                }
            }
            match (tail, method) {
                ([], _) if get => match &local {
                    Some(study) => match study.status().await {
                        Some(s) => Response::json(200, &s),
                        None => Response::error(503, "study is not running"),
                    },
                    None => match registry.remote_status(id).await {
                        Ok(Some(s)) => Response::json(200, &s),
                        Ok(None) => not_found("study"),
                        Err(e) => internal(e),
                    },
                },
                (["start"], "POST") => {
                    let study = match registry.acquire(id).await {
                        Acquired::Local(h) => h,
                        Acquired::Unknown => return not_found("study"),
                        Acquired::Elsewhere | Acquired::Unavailable => {
                            return Response::error(
                                503,
                                "the study runs on another relay; try again later",
                            )
                            .with_header("Retry-After", "2");
                        }
                    };
                    match study.start_round().await {
                        Ok(s) => {
                            info!(study = %study.id(), "round started from the dashboard");
                            Response::json(200, &s)
                        }
                        // Too few enrolled, or a round is already running.
                        Err(Some(e)) => Response::error(409, &e.to_string()),
                        Err(None) => Response::error(503, "study is not running"),
                    }
                }
                (["results"], _) if get => match registry.store().results(id).await {
                    Ok(rows) => Response::json(200, &rows),
                    Err(e) => internal(e),
                },
                (["results.csv"], _) if get => match registry.store().results(id).await {
                    Ok(rows) => {
                        Response::new(200, "text/csv; charset=utf-8", csv(&rows).into_bytes())
                            .with_header(
                                "Content-Disposition",
                                format!("attachment; filename=\"{id}-results.csv\""),
                            )
                    }
                    Err(e) => internal(e),
                },
                (["rounds"], _) if get => match registry.store().rounds(id).await {
                    Ok(rows) => {
                        let done: Vec<_> =
                            rows.into_iter().filter(|r| r.status != "running").collect();
                        Response::json(200, &done)
                    }
                    Err(e) => internal(e),
                },
                ([] | ["results"] | ["results.csv"] | ["rounds"], _) => {
                    method_not_allowed("GET, HEAD")
                }
                (["start"], _) => method_not_allowed("POST"),
                _ => not_found("API route"),
            }
        }
    }
}

async fn create(registry: &Registry, req: &Request) -> Response {
    let spec = match parse_create_body(&req.body) {
        Ok(s) => s,
        Err(message) => return Response::error(400, &message),
    };
    match registry.create_stored(spec).await {
        Ok(s) => {
            info!(study = %s.params.id, "study created through the API");
            Response::json(201, &s)
        }
        Err(e @ CreateError::Exists(_)) => Response::error(409, &e.to_string()),
        Err(e @ CreateError::Invalid(_)) => Response::error(400, &e.to_string()),
        Err(e @ CreateError::TooLarge { .. }) => Response::error(400, &e.to_string()),
        Err(e) => internal(e),
    }
}

/// The CSV export: a header row, then one row per completed round. Lists (histogram,
/// contributors) are joined with `;`.
pub fn csv(rows: &[ResultRow]) -> String {
    let mut out = String::from(
        "study,round,count,sum,mean,stddev,histogram,roster_size,threshold,contributors,partial_sums,safety_code,started_at_ms,finished_at_ms\n",
    );
    let join = |xs: &mut dyn Iterator<Item = String>| xs.collect::<Vec<_>>().join(";");
    for r in rows {
        let (o, st) = (
            &r.outcome,
            crate::views::one_question_statistics(&r.outcome),
        );
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
            o.study,
            o.round,
            st.count,
            st.sum,
            st.mean,
            st.stddev,
            join(&mut st.histogram.iter().map(u64::to_string)),
            o.roster_size,
            o.threshold,
            join(&mut o.contributors.iter().map(u32::to_string)),
            o.partial_sums,
            o.safety_code,
            o.started_ms,
            o.finished_ms
        );
    }
    out
}
