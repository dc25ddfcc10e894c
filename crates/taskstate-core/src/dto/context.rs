//! Who ran what: runner contexts (with their parent chain) and the info an
//! application registered about itself, with their stored JSON forms.

use serde_json::{Map, Value};

use super::{json_err, take_opt_str, take_str};
use crate::ids::{AppId, RunnerId};
use crate::pyjson;

/// Where a runner ran: its class, id, process, host and thread, and the
/// runner that started it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RunnerContext {
    /// The runner's class name.
    pub runner_cls: String,
    /// The runner's id (unique key of a stored context).
    pub runner_id: RunnerId,
    /// The context of the runner that started this one.
    pub parent: Option<Box<RunnerContext>>,
    /// OS process id.
    pub pid: i64,
    /// Host name.
    pub hostname: String,
    /// OS thread id.
    pub thread_id: i64,
}

impl RunnerContext {
    /// The parent's runner id, if there is a parent.
    #[must_use]
    pub fn parent_runner_id(&self) -> Option<&RunnerId> {
        self.parent.as_ref().map(|p| &p.runner_id)
    }

    /// This context and its ancestors, nearest first.
    pub fn chain(&self) -> impl Iterator<Item = &RunnerContext> {
        std::iter::successors(Some(self), |c| c.parent.as_deref())
    }

    fn write_json(&self, out: &mut String) {
        out.push_str("{\"hostname\": ");
        pyjson::write_str(out, &self.hostname);
        if let Some(p) = &self.parent {
            out.push_str(", \"parent_ctx\": ");
            p.write_json(out);
        }
        out.push_str(&format!(", \"pid\": {}, \"runner_cls\": ", self.pid));
        pyjson::write_str(out, &self.runner_cls);
        out.push_str(", \"runner_id\": ");
        pyjson::write_str(out, self.runner_id.as_str());
        out.push_str(&format!(", \"thread_id\": {}}}", self.thread_id));
    }

    /// The JSON form (sorted keys; `parent_ctx` only when set).
    ///
    /// ```
    /// use taskstate_core::RunnerContext;
    /// let ctx = RunnerContext {
    ///     runner_cls: "ThreadWorker".into(), runner_id: "w-1".into(), parent: None,
    ///     pid: 100, hostname: "host".into(), thread_id: 2,
    /// };
    /// assert_eq!(ctx.to_json(), r#"{"hostname": "host", "pid": 100, "runner_cls": "ThreadWorker", "runner_id": "w-1", "thread_id": 2}"#);
    /// assert_eq!(RunnerContext::from_json(&ctx.to_json()).unwrap(), ctx);
    /// ```
    #[must_use]
    pub fn to_json(&self) -> String {
        let mut out = String::new();
        self.write_json(&mut out);
        out
    }

    /// Parses the JSON form.
    pub fn from_json(text: &str) -> Result<Self, String> {
        let v: Value =
            serde_json::from_str(text).map_err(|e| json_err("runner context json", e))?;
        Self::from_value(v, 0)
    }

    fn from_value(v: Value, depth: usize) -> Result<Self, String> {
        const W: &str = "runner context";
        if depth > 1000 {
            return Err("runner context: parent chain deeper than 1000".into());
        }
        let Value::Object(mut m) = v else {
            return Err("runner context json is not an object".into());
        };
        let int = |m: &mut Map<String, Value>, k: &str| match m.remove(k) {
            Some(Value::Number(n)) => n
                .as_i64()
                .ok_or_else(|| format!("{W}: {k:?} is not a 64-bit integer: {n}")),
            other => Err(format!("{W}: {k:?} is not an integer: {other:?}")),
        };
        let parent = match m.remove("parent_ctx") {
            None | Some(Value::Null) => None,
            Some(p) => Some(Box::new(Self::from_value(p, depth + 1)?)),
        };
        Ok(Self {
            runner_cls: take_str(&mut m, "runner_cls", W)?,
            runner_id: RunnerId::new(take_str(&mut m, "runner_id", W)?),
            parent,
            pid: int(&mut m, "pid")?,
            hostname: take_str(&mut m, "hostname", W)?,
            thread_id: int(&mut m, "thread_id")?,
        })
    }
}

/// What an application registered about itself.
#[derive(Clone, Debug, PartialEq)]
pub struct AppInfo {
    /// The app id (unique key).
    pub app_id: AppId,
    /// The app's configuration values (a JSON object), if recorded.
    pub config_values: Option<Map<String, Value>>,
    /// Configuration file path.
    pub config_filepath: Option<String>,
    /// Python module of the app.
    pub module: String,
    /// File of that module.
    pub module_filepath: Option<String>,
    /// Name of the variable holding the app.
    pub app_variable: Option<String>,
}

impl AppInfo {
    /// An app info with only the required fields.
    #[must_use]
    pub fn new(app_id: impl Into<AppId>, module: impl Into<String>) -> Self {
        Self {
            app_id: app_id.into(),
            config_values: None,
            config_filepath: None,
            module: module.into(),
            module_filepath: None,
            app_variable: None,
        }
    }

    /// The stored JSON form (key order: app_id, config_values,
    /// config_filepath, module, module_filepath, app_variable).
    #[must_use]
    pub fn to_json(&self) -> String {
        let mut out = String::with_capacity(256);
        out.push_str("{\"app_id\": ");
        pyjson::write_str(&mut out, self.app_id.as_str());
        out.push_str(", \"config_values\": ");
        match &self.config_values {
            Some(m) => pyjson::write_map(&mut out, m),
            None => out.push_str("null"),
        }
        out.push_str(", \"config_filepath\": ");
        pyjson::write_opt_str(&mut out, self.config_filepath.as_deref());
        out.push_str(", \"module\": ");
        pyjson::write_str(&mut out, &self.module);
        out.push_str(", \"module_filepath\": ");
        pyjson::write_opt_str(&mut out, self.module_filepath.as_deref());
        out.push_str(", \"app_variable\": ");
        pyjson::write_opt_str(&mut out, self.app_variable.as_deref());
        out.push('}');
        out
    }

    /// Parses the stored JSON form.
    pub fn from_json(text: &str) -> Result<Self, String> {
        let v: Value = serde_json::from_str(text).map_err(|e| json_err("app info json", e))?;
        Self::from_value(v)
    }

    /// Decodes the JSON form from a parsed value.
    pub fn from_value(v: Value) -> Result<Self, String> {
        const W: &str = "app info";
        let Value::Object(mut m) = v else {
            return Err("app info json is not an object".into());
        };
        let config_values = match m.remove("config_values") {
            None | Some(Value::Null) => None,
            Some(Value::Object(c)) => Some(c),
            Some(other) => return Err(format!("{W}: config_values is not an object: {other}")),
        };
        Ok(Self {
            app_id: AppId::new(take_str(&mut m, "app_id", W)?),
            config_values,
            config_filepath: take_opt_str(&mut m, "config_filepath", W)?,
            module: take_str(&mut m, "module", W)?,
            module_filepath: take_opt_str(&mut m, "module_filepath", W)?,
            app_variable: take_opt_str(&mut m, "app_variable", W)?,
        })
    }

    /// The JSON form as a value.
    #[must_use]
    pub fn to_value(&self) -> Value {
        serde_json::from_str(&self.to_json()).unwrap_or(Value::Null)
    }
}
