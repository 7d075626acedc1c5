//! The HTTP API under `/api` (see docs/API.md): a public study list, and the admin routes
//! behind the bearer token.

use cohort_core::error::StudyError;
use cohort_core::study::{StudyParams, StudySpec};
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
                (["results.csv"], _) if get => match results_with_params(registry, id).await {
                    Ok((params, rows)) => {
                        let body = match csv(&params, &rows) {
                            Ok(b) => b,
                            Err(e) => return internal(e),
                        };
                        Response::new(200, "text/csv; charset=utf-8", body).with_header(
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

/// The study's parameters and its completed rounds (for the CSV export).
async fn results_with_params(
    registry: &Registry,
    id: &str,
) -> Result<(StudyParams, Vec<ResultRow>), crate::store::StoreError> {
    let store = registry.store();
    let params = match store.study(id).await? {
        Some(spec) => spec.params,
        None => match registry.get(id) {
            Some(h) => match h.status().await {
                Some(s) => s.params,
                None => return Err(crate::store::StoreError::Closed),
            },
            None => return Err(crate::store::StoreError::Closed),
        },
    };
    Ok((params, store.results(id).await?))
}

/// The header of the CSV export.
pub const CSV_HEADER: [&str; 9] = [
    "study",
    "round",
    "finished_at_ms",
    "question",
    "with",
    "option",
    "bucket",
    "statistic",
    "value",
];

/// One row of the CSV export, before writing.
struct CsvRow<'a> {
    question: &'a str,
    with: &'a str,
    option: &'a str,
    bucket: String,
    statistic: &'static str,
    value: String,
}

/// An optional number as a CSV value: empty for `None`.
fn num(x: Option<f64>) -> String {
    x.map(|v| v.to_string()).unwrap_or_default()
}

/// The CSV export (docs/API.md, "results.csv"): long format, one row per round and statistic,
/// with the columns of [`CSV_HEADER`]. Per round: its own rows (`count`, `roster_size`,
/// `threshold`, `partial_sums`, `started_at_ms`, `safety_code`); per number question `count`,
/// `sum`, `mean`, `stddev` and one `histogram` row per bucket (`bucket` = `[lo, hi)`, the last
/// closed); per choice question `count` and one `option_count` row per option; per pair of
/// number questions (`question` = x, `with` = y) `n`, `mean_x`, `mean_y`, `r`, `slope`,
/// `intercept`; per choice × number (`question` = the number, `with` = the choice, `option`)
/// `n` and `mean`. A `null` statistic is an empty value. Written by the `csv` crate (quoting
/// as RFC 4180).
pub fn csv(params: &StudyParams, rows: &[ResultRow]) -> Result<Vec<u8>, csv::Error> {
    use cohort_core::questionnaire::QuestionStats;
    let edges_of = |id: &str| params.bucket_edges_of(id).unwrap_or_default();
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(CSV_HEADER)?;
    for row in rows {
        let r = &row.result;
        let mut out: Vec<CsvRow<'_>> = Vec::new();
        let round = |statistic: &'static str, value: String| CsvRow {
            question: "",
            with: "",
            option: "",
            bucket: String::new(),
            statistic,
            value,
        };
        out.push(round("count", r.count.to_string()));
        out.push(round("roster_size", r.roster_size.to_string()));
        out.push(round("threshold", row.threshold.to_string()));
        out.push(round("partial_sums", r.partial_sums.to_string()));
        out.push(round("started_at_ms", row.started_at_ms.to_string()));
        out.push(round("safety_code", r.safety_code.to_string()));
        for (id, stats) in &r.questions.0 {
            let q = |statistic: &'static str, value: String| CsvRow {
                question: id,
                with: "",
                option: "",
                bucket: String::new(),
                statistic,
                value,
            };
            match stats {
                QuestionStats::Number(n) => {
                    out.push(q("count", n.count.to_string()));
                    out.push(q("sum", n.sum.to_string()));
                    out.push(q("mean", num(n.mean)));
                    out.push(q("stddev", num(n.stddev)));
                    let edges = edges_of(id);
                    let last = n.histogram.len().saturating_sub(1);
                    for (b, c) in n.histogram.iter().enumerate() {
                        let bucket = match (edges.get(b), edges.get(b + 1)) {
                            (Some(lo), Some(hi)) if b == last => format!("[{lo}, {hi}]"),
                            (Some(lo), Some(hi)) => format!("[{lo}, {hi})"),
                            _ => b.to_string(),
                        };
                        out.push(CsvRow {
                            bucket,
                            ..q("histogram", c.to_string())
                        });
                    }
                }
                QuestionStats::Choice(c) => {
                    out.push(q("count", c.count.to_string()));
                    for (label, n) in &c.counts.0 {
                        out.push(CsvRow {
                            option: label,
                            ..q("option_count", n.to_string())
                        });
                    }
                }
            }
        }
        for p in &r.pairs {
            let pair = |statistic: &'static str, value: String| CsvRow {
                question: &p.x,
                with: &p.y,
                option: "",
                bucket: String::new(),
                statistic,
                value,
            };
            out.push(pair("n", p.n.to_string()));
            out.push(pair("mean_x", num(p.mean_x)));
            out.push(pair("mean_y", num(p.mean_y)));
            out.push(pair("r", num(p.r)));
            out.push(pair("slope", num(p.slope)));
            out.push(pair("intercept", num(p.intercept)));
        }
        for b in &r.by_option {
            let by = |statistic: &'static str, value: String| CsvRow {
                question: &b.number,
                with: &b.choice,
                option: &b.option,
                bucket: String::new(),
                statistic,
                value,
            };
            out.push(by("n", b.n.to_string()));
            out.push(by("mean", num(b.mean)));
        }
        let (study, round_id, finished) = (
            r.study.as_str(),
            r.round.to_string(),
            row.finished_at_ms.to_string(),
        );
        for c in out {
            w.write_record([
                study,
                round_id.as_str(),
                finished.as_str(),
                c.question,
                c.with,
                c.option,
                c.bucket.as_str(),
                c.statistic,
                c.value.as_str(),
            ])?;
        }
    }
    w.into_inner().map_err(|e| e.into_error().into())
}
