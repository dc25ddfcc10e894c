//! `taskstate serve`: a read-only web monitor of any store (the `serve`
//! feature).
//!
//! Pages are rendered on the server (no JavaScript; every asset is served
//! by the binary), each with a JSON twin under `/api/`:
//!
//! | page | JSON | shows |
//! |---|---|---|
//! | `/` | `/api/overview` | counts per kind, latest-status counts, apps, recent activity |
//! | `/invocations` | `/api/invocations` | keyset pages filtered by `status`, `task`, `workflow`, `since`, `until` |
//! | `/invocations/{id}` | `/api/invocations/{id}` | call, arguments, result or exception, status history and its validity, runners, parent and children |
//! | `/workflows` | `/api/workflows` | workflow types; `?type=` its runs |
//! | `/workflows/{id}` | `/api/workflows/{id}` | the family tree, within `?budget=` nodes |
//! | `/runners` | `/api/runners` | runner contexts whose id contains `?q=` (literal) |
//! | `/timeline` | `/api/timeline` | history in `since`..`until` as lanes per runner |
//!
//! The store is opened read-only by the CLI and the router only answers
//! `GET` (and `HEAD`). A bad parameter is a 400 naming it; an absent id a
//! 404; a store failure a 503 with its one-line message.
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! let store = taskstate::open_read_only("sqlite:///var/lib/app/state.db")?;
//! let app = taskstate::serve::Monitor::new(Arc::from(store), None);
//! taskstate::serve::run(app, "127.0.0.1:8080".parse()?, |addr| eprintln!("serving on http://{addr}/"))?;
//! # Ok(()) }
//! ```

mod html;
mod params;
mod views;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use parking_lot::Mutex;
use taskstate_core::{ErrorKind, StateBackend};

pub use html::encode_component;
use params::Params;
pub use views::{
    Figures, InvocationDetail, InvocationList, Overview, Runners, Timeline, Tree, Workflows,
};

/// How long the overview's store-wide counts are reused before a refresh
/// is started (the page shows their age).
pub const FIGURES_MAX_AGE: Duration = Duration::from_secs(30);

/// A failed request: what the client sees.
#[derive(Debug)]
pub enum WebError {
    /// 400: the request is malformed (the message names the parameter).
    BadRequest(String),
    /// 404: no such invocation or workflow.
    NotFound(String),
    /// 503: the store failed (locked, unreachable, corrupt row…).
    Store(String),
}

impl WebError {
    pub(crate) fn bad(msg: impl Into<String>) -> Self {
        WebError::BadRequest(msg.into())
    }

    fn status(&self) -> StatusCode {
        match self {
            WebError::BadRequest(_) => StatusCode::BAD_REQUEST,
            WebError::NotFound(_) => StatusCode::NOT_FOUND,
            WebError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn message(&self) -> &str {
        match self {
            WebError::BadRequest(m) | WebError::NotFound(m) | WebError::Store(m) => m,
        }
    }
}

impl From<taskstate_core::Error> for WebError {
    fn from(e: taskstate_core::Error) -> Self {
        match e.kind() {
            ErrorKind::InvalidInput => WebError::BadRequest(e.to_string()),
            ErrorKind::NotFound => WebError::NotFound(e.to_string()),
            _ => WebError::Store(e.to_string()),
        }
    }
}

/// The monitor's state: the store, the optional access token, and the
/// cached store-wide figures.
pub struct Monitor {
    store: Arc<dyn StateBackend>,
    token: Option<String>,
    figures: Mutex<FiguresCache>,
}

#[derive(Default)]
struct FiguresCache {
    value: Option<(Instant, Figures)>,
    refreshing: bool,
}

impl Monitor {
    /// A monitor of `store`; with `token`, every request must carry it (as
    /// `Authorization: Bearer …`, the `taskstate_token` cookie, or once as
    /// `?token=…`, which sets the cookie).
    pub fn new(store: Arc<dyn StateBackend>, token: Option<String>) -> Arc<Self> {
        Arc::new(Monitor {
            store,
            token: token.filter(|t| !t.is_empty()),
            figures: Mutex::new(FiguresCache::default()),
        })
    }

    /// The figures, and their age: fresh ones are read now only when none
    /// were ever read; stale ones are served while one refresh runs.
    fn figures(self: &Arc<Self>) -> Result<(Figures, f64), WebError> {
        let stale = {
            let mut c = self.figures.lock();
            let cached = c.value.as_ref().map(|(at, f)| (at.elapsed(), f.clone()));
            if let Some((age, _)) = &cached
                && *age > FIGURES_MAX_AGE
                && !c.refreshing
            {
                c.refreshing = true;
                let me = Arc::clone(self);
                std::thread::spawn(move || me.refresh_figures());
            }
            cached.map(|(age, f)| (f, age.as_secs_f64()))
        };
        match stale {
            Some(v) => Ok(v),
            None => {
                let f = views::figures(self.store.as_ref())?;
                self.figures.lock().value = Some((Instant::now(), f.clone()));
                Ok((f, 0.0))
            }
        }
    }

    fn refresh_figures(&self) {
        let fresh = views::figures(self.store.as_ref());
        let mut c = self.figures.lock();
        c.refreshing = false;
        if let Ok(f) = fresh {
            c.value = Some((Instant::now(), f));
        }
    }
}

/// Runs `f` on the blocking pool (every store call blocks).
async fn blocking<T: Send + 'static>(
    app: &Arc<Monitor>,
    f: impl FnOnce(&Arc<Monitor>) -> Result<T, WebError> + Send + 'static,
) -> Result<T, WebError> {
    let app = Arc::clone(app);
    tokio::task::spawn_blocking(move || f(&app))
        .await
        .unwrap_or_else(|e| Err(WebError::Store(format!("request failed: {e}"))))
}

fn html_response(r: Result<maud::Markup, WebError>) -> Response {
    match r {
        Ok(m) => Html(m.into_string()).into_response(),
        Err(e) => (
            e.status(),
            Html(html::error_page(e.status().as_u16(), e.message()).into_string()),
        )
            .into_response(),
    }
}

fn json_response<T: serde::Serialize>(r: Result<T, WebError>) -> Response {
    let (status, body) = match r {
        Ok(v) => match serde_json::to_string(&v) {
            Ok(s) => (StatusCode::OK, s),
            Err(e) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                serde_json::json!({ "error": e.to_string() }).to_string(),
            ),
        },
        Err(e) => (
            e.status(),
            serde_json::json!({ "error": e.message() }).to_string(),
        ),
    };
    (
        status,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        body,
    )
        .into_response()
}

/// One page and its JSON twin from one builder.
macro_rules! page_pair {
    ($html:ident, $api:ident, $build:expr, $render:path) => {
        async fn $html(State(app): State<Arc<Monitor>>, RawQuery(q): RawQuery) -> Response {
            html_response(
                blocking(&app, move |a| $build(a, q.as_deref()))
                    .await
                    .map(|v| $render(&v)),
            )
        }
        async fn $api(State(app): State<Arc<Monitor>>, RawQuery(q): RawQuery) -> Response {
            json_response(blocking(&app, move |a| $build(a, q.as_deref())).await)
        }
    };
}

/// The same, for pages of one id (`/…/{id}`).
macro_rules! id_page_pair {
    ($html:ident, $api:ident, $build:expr, $render:path) => {
        async fn $html(
            State(app): State<Arc<Monitor>>,
            Path(id): Path<String>,
            RawQuery(q): RawQuery,
        ) -> Response {
            html_response(
                blocking(&app, move |a| $build(a, &id, q.as_deref()))
                    .await
                    .map(|v| $render(&v)),
            )
        }
        async fn $api(
            State(app): State<Arc<Monitor>>,
            Path(id): Path<String>,
            RawQuery(q): RawQuery,
        ) -> Response {
            json_response(blocking(&app, move |a| $build(a, &id, q.as_deref())).await)
        }
    };
}

fn build_overview(a: &Arc<Monitor>, q: Option<&str>) -> Result<Overview, WebError> {
    Params::parse(q, &[])?;
    let (f, age) = a.figures()?;
    views::overview(a.store.as_ref(), f, age)
}

fn build_list(a: &Arc<Monitor>, q: Option<&str>) -> Result<InvocationList, WebError> {
    let p = Params::parse(q, views::LIST_PARAMS)?;
    views::invocation_list(a.store.as_ref(), &p)
}

fn build_detail(a: &Arc<Monitor>, id: &str, q: Option<&str>) -> Result<InvocationDetail, WebError> {
    Params::parse(q, &[])?;
    views::invocation_detail(a.store.as_ref(), id)
}

fn build_workflows(a: &Arc<Monitor>, q: Option<&str>) -> Result<Workflows, WebError> {
    let p = Params::parse(q, &["type", "limit", "after"])?;
    views::workflows(a.store.as_ref(), &p)
}

fn build_tree(a: &Arc<Monitor>, id: &str, q: Option<&str>) -> Result<Tree, WebError> {
    let p = Params::parse(q, &["budget"])?;
    views::tree(a.store.as_ref(), id, &p)
}

fn build_runners(a: &Arc<Monitor>, q: Option<&str>) -> Result<Runners, WebError> {
    let p = Params::parse(q, &["q", "limit"])?;
    views::runners(a.store.as_ref(), &p)
}

fn build_timeline(a: &Arc<Monitor>, q: Option<&str>) -> Result<Timeline, WebError> {
    let p = Params::parse(q, &["since", "until", "limit"])?;
    views::timeline(a.store.as_ref(), &p)
}

page_pair!(overview_page, overview_api, build_overview, html::overview);
page_pair!(list_page, list_api, build_list, html::invocation_list);
id_page_pair!(
    detail_page,
    detail_api,
    build_detail,
    html::invocation_detail
);
page_pair!(
    workflows_page,
    workflows_api,
    build_workflows,
    html::workflows
);
id_page_pair!(tree_page, tree_api, build_tree, html::tree);
page_pair!(runners_page, runners_api, build_runners, html::runners);
page_pair!(timeline_page, timeline_api, build_timeline, html::timeline);

const STYLE: &str = include_str!("style.css");

async fn style() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        STYLE,
    )
        .into_response()
}

async fn not_found(req: Request) -> Response {
    let msg = format!("no page at {}", params::clip(req.uri().path()));
    if req.uri().path().starts_with("/api/") {
        json_response::<()>(Err(WebError::NotFound(msg)))
    } else {
        html_response(Err(WebError::NotFound(msg)))
    }
}

/// Constant-time comparison, so the token cannot be found by timing.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn presented_token(headers: &HeaderMap, query: Option<&str>) -> (Option<String>, bool) {
    if let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    {
        return (Some(v.to_owned()), false);
    }
    for cookie in headers.get_all(header::COOKIE) {
        if let Ok(c) = cookie.to_str() {
            for part in c.split(';') {
                if let Some(v) = part.trim().strip_prefix("taskstate_token=") {
                    return (Some(v.to_owned()), false);
                }
            }
        }
    }
    let from_query = form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned());
    let set_cookie = from_query.is_some();
    (from_query, set_cookie)
}

/// The token check (when configured) and the security headers of every
/// response.
async fn guard(State(app): State<Arc<Monitor>>, req: Request, next: Next) -> Response {
    let mut set_cookie = None;
    if let Some(expected) = &app.token {
        let (given, from_query) = presented_token(req.headers(), req.uri().query());
        match given {
            Some(g) if same(g.as_bytes(), expected.as_bytes()) => {
                if from_query {
                    set_cookie = Some(format!(
                        "taskstate_token={g}; Path=/; HttpOnly; SameSite=Strict"
                    ));
                }
            }
            _ => {
                let mut r = (
                    StatusCode::UNAUTHORIZED,
                    "a token is required: open the URL with ?token=… once, or send Authorization: Bearer …\n",
                )
                    .into_response();
                secure(r.headers_mut());
                return r;
            }
        }
    }
    let mut r = next.run(req).await;
    secure(r.headers_mut());
    if let Some(c) = set_cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        r.headers_mut().insert(header::SET_COOKIE, c);
    }
    r
}

fn secure(h: &mut HeaderMap) {
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
}

/// The monitor's routes (only `GET`/`HEAD`; anything else is 405).
pub fn router(app: Arc<Monitor>) -> Router {
    Router::new()
        .route("/", get(overview_page))
        .route("/api/overview", get(overview_api))
        .route("/invocations", get(list_page))
        .route("/api/invocations", get(list_api))
        .route("/invocations/{id}", get(detail_page))
        .route("/api/invocations/{id}", get(detail_api))
        .route("/workflows", get(workflows_page))
        .route("/api/workflows", get(workflows_api))
        .route("/workflows/{id}", get(tree_page))
        .route("/api/workflows/{id}", get(tree_api))
        .route("/runners", get(runners_page))
        .route("/api/runners", get(runners_api))
        .route("/timeline", get(timeline_page))
        .route("/api/timeline", get(timeline_api))
        .route("/assets/style.css", get(style))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(Arc::clone(&app), guard))
        .with_state(app)
}

/// Whether `addr` is reachable only from this machine.
#[must_use]
pub fn is_loopback(addr: &SocketAddr) -> bool {
    addr.ip().is_loopback()
}

/// Serves `app` on `bind` until Ctrl-C or SIGTERM; `ready` hears the bound
/// address (port 0 picks a free one) once connections are accepted.
pub fn run(
    app: Arc<Monitor>,
    bind: SocketAddr,
    ready: impl FnOnce(SocketAddr),
) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the server's runtime: {e}"))?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(bind)
            .await
            .map_err(|e| format!("cannot listen on {bind}: {e}"))?;
        let addr = listener
            .local_addr()
            .map_err(|e| format!("cannot read the bound address: {e}"))?;
        ready(addr);
        axum::serve(listener, router(app))
            .with_graceful_shutdown(shutdown())
            .await
            .map_err(|e| format!("server failed: {e}"))
    })
}

async fn shutdown() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
