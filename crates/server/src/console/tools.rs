//! The account's HTTP tools: a list, and a form that creates or changes one through the
//! functions the API's handlers call. Header values come back masked, as in the API; a masked value sent back
//! unchanged keeps the stored one.

use anyreply_core::ErrorCode;
use anyreply_core::wire::Tool;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use diesel_async::AsyncConnection;
use serde_json::{Value, json};

use super::form::{Body, Pairs};
use super::session::{Operator, Submitted};
use super::{ConsoleError, FormErrors, Layout, form_errors};
use crate::app::App;
use crate::controllers::tools as api;
use crate::error::ApiError;
use crate::models::tool;

const LISTED: u32 = 1_000;

#[derive(askama::Template, askama_web::WebTemplate)]
#[template(path = "console/tools.html")]
pub(super) struct ListPage {
    layout: Layout,
    tools: Vec<Tool>,
}

pub(super) async fn list(
    State(app): State<App>,
    operator: Operator,
) -> Result<Response, ConsoleError> {
    let mut conn = app.db().await?;
    let page = tool::list(&mut conn, operator.account_id, LISTED, None).await?;
    Ok(ListPage {
        layout: Layout::signed_in(&operator, "tools"),
        tools: page.rows.into_iter().map(|row| row.into_wire()).collect(),
    }
    .into_response())
}

#[derive(Debug, Default)]
pub(super) struct Fields {
    name: String,
    description: String,
    endpoint: String,
    method: String,
    timeout: String,
    /// `Name: value`, one a line.
    headers: String,
    /// The parameters, as JSON.
    schema: String,
}

impl Fields {
    fn method_is(&self, method: &str) -> bool {
        self.method == method
    }

    fn of(tool: &Tool) -> Self {
        Self {
            name: tool.name.clone(),
            description: tool.description.clone(),
            endpoint: tool.endpoint.clone(),
            method: match serde_json::to_value(tool.method) {
                Ok(Value::String(method)) => method,
                _ => String::new(),
            },
            timeout: tool.timeout.to_string(),
            headers: tool
                .headers
                .iter()
                .map(|h| format!("{}: {}", h.name, h.value))
                .collect::<Vec<_>>()
                .join("\n"),
            schema: serde_json::to_string_pretty(&tool.schema).unwrap_or_default(),
        }
    }

    fn posted(form: &Pairs) -> Self {
        Self {
            name: form.get("name").to_owned(),
            description: form.get("description").to_owned(),
            endpoint: form.get("endpoint").to_owned(),
            method: form.get("method").to_owned(),
            timeout: form.get("timeout").to_owned(),
            headers: form.get("headers").to_owned(),
            schema: form.get("schema").to_owned(),
        }
    }

    fn body(&self) -> Value {
        let headers: Vec<Value> = self
            .headers
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty())
            .map(|line| {
                let (name, value) = line.split_once(':').unwrap_or((line, ""));
                json!({ "name": name.trim(), "value": value.trim() })
            })
            .collect();
        Body::default()
            .text("name", &self.name)
            .text("description", &self.description)
            .text("endpoint", &self.endpoint)
            .text("method", &self.method)
            .number("timeout", &self.timeout)
            .value("headers", Value::from(headers))
            .json(
                "schema",
                if self.schema.is_empty() {
                    "[]"
                } else {
                    &self.schema
                },
            )
            .build()
    }
}

#[derive(askama::Template, askama_web::WebTemplate)]
#[template(path = "console/tool_form.html")]
pub(super) struct FormPage {
    layout: Layout,
    id: Option<i64>,
    fields: Fields,
    errors: FormErrors,
}

impl FormPage {
    fn action(&self) -> String {
        match self.id {
            Some(id) => format!("/console/tools/{id}"),
            None => "/console/tools".to_owned(),
        }
    }
}

pub(super) async fn new_form(operator: Operator) -> Response {
    FormPage {
        layout: Layout::signed_in(&operator, "tools"),
        id: None,
        fields: Fields {
            method: "POST".to_owned(),
            timeout: "10".to_owned(),
            schema: "[]".to_owned(),
            ..Fields::default()
        },
        errors: FormErrors::default(),
    }
    .into_response()
}

pub(super) async fn edit_form(
    State(app): State<App>,
    operator: Operator,
    Path(id): Path<String>,
) -> Result<Response, ConsoleError> {
    let id = api::tool_id(&id)?;
    let mut conn = app.db().await?;
    let tool = tool::find(&mut conn, operator.account_id, id)
        .await?
        .ok_or(ApiError::new(ErrorCode::ToolNotFound))?
        .into_wire();
    Ok(FormPage {
        layout: Layout::signed_in(&operator, "tools"),
        id: Some(tool.id),
        fields: Fields::of(&tool),
        errors: FormErrors::default(),
    }
    .into_response())
}

pub(super) async fn create(
    State(app): State<App>,
    Submitted { operator, form }: Submitted<Pairs>,
) -> Result<Response, ConsoleError> {
    save(app, operator, None, form).await
}

pub(super) async fn update(
    State(app): State<App>,
    Path(id): Path<String>,
    Submitted { operator, form }: Submitted<Pairs>,
) -> Result<Response, ConsoleError> {
    let id = api::tool_id(&id)?;
    save(app, operator, Some(id), form).await
}

async fn save(
    app: App,
    operator: Operator,
    id: Option<i64>,
    form: Pairs,
) -> Result<Response, ConsoleError> {
    let fields = Fields::posted(&form);
    match write(&app, &operator, id, &fields.body()).await {
        Ok(_) => Ok(Redirect::to("/console/tools").into_response()),
        Err(refusal) => {
            let page = FormPage {
                layout: Layout::signed_in(&operator, "tools"),
                id,
                fields,
                errors: form_errors(refusal, ErrorCode::ToolNotFound)?,
            };
            Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response())
        }
    }
}

/// Validates and stores the tool as `POST /api/user/tools` (creating, in a transaction) or
/// `PUT /api/user/tools/{id}` does.
async fn write(
    app: &App,
    operator: &Operator,
    id: Option<i64>,
    body: &Value,
) -> Result<Tool, ApiError> {
    crate::extract::refuse_nul(body)?;
    let input = api::read_input(body, id.is_none())?;
    let account_id = operator.account_id;
    let actor = operator.actor();
    let mut conn = app.db().await?;
    match id {
        None => {
            conn.transaction::<_, ApiError, _>(async |conn| {
                api::create(conn, account_id, input, &actor).await
            })
            .await
        }
        Some(id) => api::update(&mut conn, account_id, id, input, &actor).await,
    }
}
