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
