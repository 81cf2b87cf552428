//! The route table: matchit paths compiled once from `routes.yaml`, then method dispatch.

use crate::config::routes::{AuthMethod, HandlerKind, ResourceKind};
use cedar_policy::EntityUid;
use http::Method;

/// A compiled route.
#[derive(Debug, Clone)]
pub struct Route {
    /// Route name; the id of its `Api` resource.
    pub name: String,
    /// Method.
    pub method: Method,
    /// Handler.
    pub handler: HandlerKind,
    /// No principal needed.
    pub public: bool,
    /// Accepted authentication methods.
    pub auth: Vec<AuthMethod>,
    /// Cedar action (absent only for public routes) and its name.
    pub action: Option<(String, EntityUid)>,
    /// How the resource is derived.
    pub resource: ResourceKind,
}

/// Percent-decodes path parameters; a parameter that does not decode to UTF-8 is a 400.
pub fn decode_params<'r, 'p>(
    params: &[(&'r str, &'p str)],
) -> Result<Vec<(&'r str, std::borrow::Cow<'p, str>)>, crate::errors::ApiError> {
    params
        .iter()
        .map(|(k, v)| {
            percent_decode(v).map(|d| (*k, d)).ok_or_else(|| {
                crate::errors::ApiError::bad_request(
                    "invalid_path",
                    format!("path parameter `{k}` is not valid percent-encoded UTF-8"),
                )
                .with_param(*k)
            })
        })
        .collect()
}

/// `%XX` escapes decoded (a `%` not followed by two hex digits stays as it is); `None` when
/// the result is not UTF-8.
fn percent_decode(s: &str) -> Option<std::borrow::Cow<'_, str>> {
    if !s.contains('%') {
        return Some(std::borrow::Cow::Borrowed(s));
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (
            b[i],
            b.get(i + 1).copied().and_then(hex),
            b.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok().map(std::borrow::Cow::Owned)
}

/// The outcome of matching a request.
#[derive(Debug)]
pub enum Match<'r, 'p> {
    /// A route, with path parameters.
    Found(&'r Route, Vec<(&'r str, &'p str)>),
    /// The path exists but not for this method.
    WrongMethod(&'r [Method]),
    /// No such path.
    NotFound,
}

#[derive(Debug)]
struct PathEntry {
    methods: Vec<Method>,
    routes: Vec<usize>,
}

/// Matchit table: path → the routes on it, one per method.
#[derive(Debug)]
pub struct Router {
    table: matchit::Router<usize>,
    paths: Vec<PathEntry>,
    routes: Vec<Route>,
}

impl Router {
    /// Builds the table. Errors are `(route index, message)` so the caller can point at lines.
    pub fn build(routes: Vec<(String, Route)>) -> Result<Self, Vec<(usize, String)>> {
        let mut table = matchit::Router::new();
        let mut paths: Vec<PathEntry> = Vec::new();
        let mut by_path: Vec<String> = Vec::new();
        let mut errors = Vec::new();
        let mut compiled = Vec::new();
        for (i, (path, route)) in routes.into_iter().enumerate() {
            if let Some(p) = by_path.iter().position(|x| *x == path) {
                let entry = &mut paths[p];
                if entry.methods.contains(&route.method) {
                    errors.push((
                        i,
                        format!(
                            "duplicate route: `{} {path}` is defined twice",
                            route.method
                        ),
                    ));
                    continue;
                }
                entry.methods.push(route.method.clone());
                entry.routes.push(i);
            } else {
                if let Err(e) = table.insert(path.clone(), paths.len()) {
                    errors.push((i, format!("path `{path}`: {e}")));
                    continue;
                }
                by_path.push(path);
                paths.push(PathEntry {
                    methods: vec![route.method.clone()],
                    routes: vec![i],
                });
            }
            compiled.push((i, route));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        // Route indexes in `paths` are positions in the input; keep them aligned.
        let routes = compiled.into_iter().map(|(_, r)| r).collect();
        Ok(Self {
            table,
            paths,
            routes,
        })
    }

    /// Matches a method and path.
    pub fn at<'r, 'p>(&'r self, method: &Method, path: &'p str) -> Match<'r, 'p> {
        let Ok(m) = self.table.at(path) else {
            return Match::NotFound;
        };
        let Some(entry) = self.paths.get(*m.value) else {
            return Match::NotFound;
        };
        // HEAD is answered like GET.
        let wanted = if method == Method::HEAD {
            &Method::GET
        } else {
            method
        };
        match entry.methods.iter().position(|x| x == wanted) {
            Some(i) => {
                let Some(route) = entry.routes.get(i).and_then(|r| self.routes.get(*r)) else {
                    return Match::NotFound;
                };
                let params: Vec<(&'r str, &'p str)> = m.params.iter().collect();
                Match::Found(route, params)
            }
            None => Match::WrongMethod(&entry.methods),
        }
    }

    /// All routes in file order.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }
}
