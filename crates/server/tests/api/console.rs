//! The operator console through HTTP: sign-in and its session cookie, CSRF refusals, the
//! pages' HTML, and the actions that go through the API's handlers.

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};
use serde_json::json;

use crate::util::{TestAccount, TestApp};

/// A browser without redirects or JavaScript: it keeps the session cookie and the page's
/// CSRF token.
pub(crate) struct Browser {
    http: reqwest::Client,
    base: String,
    cookies: Vec<(String, String)>,
    csrf: String,
}

pub(crate) struct Page {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) html: String,
}

impl Browser {
    pub(crate) fn new(app: &TestApp) -> Self {
        Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: app.base.clone(),
            cookies: Vec::new(),
            csrf: String::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn keep(&mut self, response: reqwest::Response) -> Page {
        let status = response.status();
        let headers = response.headers().clone();
        for set in headers.get_all(SET_COOKIE) {
            let set = set.to_str().unwrap();
            let (pair, _) = set.split_once(';').unwrap_or((set, ""));
            let (name, value) = pair.split_once('=').unwrap();
            self.cookies.retain(|(kept, _)| kept != name);
            if !value.is_empty() {
                self.cookies.push((name.to_owned(), value.to_owned()));
            }
        }
        let html = response.text().await.unwrap();
        if let Some(token) = html
            .split("name=\"csrf\" value=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
        {
            self.csrf = token.to_owned();
        }
        Page {
            status,
            headers,
            html,
        }
    }

    pub(crate) async fn get(&mut self, path: &str) -> Page {
        let response = self
            .http
            .get(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .send()
            .await
            .unwrap();
        self.keep(response).await
    }

    /// Posts `fields`, with the page's CSRF token unless `csrf` is false.
    pub(crate) async fn post_form(
        &mut self,
        path: &str,
        fields: &[(&str, &str)],
        csrf: bool,
    ) -> Page {
        let mut form: Vec<(&str, &str)> = fields.to_vec();
        let token = self.csrf.clone();
        if csrf {
            form.push(("csrf", &token));
        }
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .form(&form)
            .send()
            .await
            .unwrap();
        self.keep(response).await
    }

    pub(crate) async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        self.post_form(path, fields, true).await
    }

    pub(crate) async fn sign_in(&mut self, key: &str) -> Page {
        self.get("/console/sign-in").await;
        self.post("/console/sign-in", &[("api_key", key)]).await
    }
}

pub(crate) fn location(page: &Page) -> &str {
    page.headers[LOCATION].to_str().unwrap()
}

pub(crate) async fn signed_in(app: &TestApp, account: &TestAccount) -> Browser {
    let mut browser = Browser::new(app);
    let page = browser.sign_in(&account.key).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.html);
    browser.get("/console").await;
    browser
}

#[tokio::test]
async fn signing_in_opens_a_strict_http_only_session_and_signing_out_ends_it() {
    let app = TestApp::spawn().await;
    let account = app.db_account("12.5").await;
    let mut browser = Browser::new(&app);

    let page = browser.get("/console").await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(location(&page), "/console/sign-in");

    let page = browser.get("/console/sign-in").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.html.contains("API key"), "{}", page.html);
    assert!(page.html.contains(">Sign in</button>"));
    let csp = page.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'") && csp.contains("default-src 'none'"));

    let page = browser
        .post("/console/sign-in", &[("api_key", "ark_nope")])
        .await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED);
    assert!(page.html.contains("That API key is not valid."));

    let page = browser
        .post("/console/sign-in", &[("api_key", &account.key)])
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(location(&page), "/console");
    let cookie = page
        .headers
        .get_all(SET_COOKIE)
        .iter()
        .map(|c| c.to_str().unwrap())
        .find(|c| c.starts_with("anyreply_console="))
        .unwrap();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    assert!(
        !cookie.contains("Secure"),
        "plain HTTP from no trusted proxy: {cookie}"
    );

    let page = browser.get("/console").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.html.contains("Acme"));
    assert!(page.html.contains("12.5"), "{}", page.html);
    assert!(page.html.contains("<svg"));

    let page = browser.post("/console/sign-out", &[]).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(location(&page), "/console/sign-in");
    assert_eq!(browser.get("/console").await.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn behind_a_trusted_proxy_over_https_the_cookie_is_secure() {
    let trusting = TestApp::spawn_with(|s| s.trusted_proxies = "127.0.0.1".parse().unwrap()).await;
    let cookie = session_cookie_over_forwarded_https(&trusting).await;
    assert!(cookie.contains("; Secure"), "{cookie}");
    // Anyone else saying HTTPS is not believed.
    let other = TestApp::spawn().await;
    let cookie = session_cookie_over_forwarded_https(&other).await;
    assert!(!cookie.contains("Secure"), "{cookie}");
}

/// The session cookie of a sign-in that says, in `X-Forwarded-Proto`, it came over HTTPS.
async fn session_cookie_over_forwarded_https(app: &TestApp) -> String {
    let account = app.db_account("1").await;
    let mut browser = Browser::new(app);
    browser.get("/console/sign-in").await;
    let token = browser.csrf.clone();
    let response = browser
        .http
        .post(format!("{}/console/sign-in", app.base))
        .header("cookie", browser.cookie_header())
        .header("x-forwarded-proto", "https")
        .form(&[("api_key", account.key.as_str()), ("csrf", &token)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    response.headers()[SET_COOKIE].to_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_post_without_the_csrf_token_is_refused_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let account = app.db_account("1").await;
    let mut anonymous = Browser::new(&app);
    anonymous.get("/console/sign-in").await;
    let page = anonymous
        .post_form("/console/sign-in", &[("api_key", &account.key)], false)
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);

    let mut browser = signed_in(&app, &account).await;
    let page = browser
        .post_form("/console/assistants", &[("name", "Sneaky")], false)
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    let page = browser
        .post_form(
            "/console/assistants",
            &[("name", "Sneaky"), ("csrf", "forged")],
            false,
        )
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert_eq!(app.count("assistants").await, 0);
}

#[tokio::test]
async fn a_revoked_key_or_twelve_idle_hours_end_the_session() {
    let app = TestApp::spawn().await;
    let account = app.db_account("1").await;
    let mut browser = signed_in(&app, &account).await;
    assert_eq!(browser.get("/console").await.status, StatusCode::OK);
    let mut conn = app.db.connect().await;
    {
        use diesel_async::RunQueryDsl;
        diesel::sql_query(
            "UPDATE console_sessions SET last_seen_at = now() - interval '12 hours 1 minute'",
        )
        .execute(&mut conn)
        .await
        .unwrap();
    }
    let page = browser.get("/console").await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(location(&page), "/console/sign-in");

    let mut browser = signed_in(&app, &account).await;
    assert_eq!(browser.get("/console").await.status, StatusCode::OK);
    anyreply_server::models::api_key::revoke(&mut conn, &account.key)
        .await
        .unwrap();
    assert_eq!(browser.get("/console").await.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn failed_sign_ins_are_rate_limited() {
    let app = TestApp::spawn().await;
    let account = app.db_account("1").await;
    let mut browser = Browser::new(&app);
    browser.get("/console/sign-in").await;
    for _ in 0..10 {
        let page = browser
            .post("/console/sign-in", &[("api_key", "ark_wrong")])
            .await;
        assert_eq!(page.status, StatusCode::UNAUTHORIZED);
    }
    let page = browser
        .post("/console/sign-in", &[("api_key", &account.key)])
        .await;
    assert_eq!(page.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(page.html.contains("Too many failed sign-ins"));
}

#[tokio::test]
async fn assistants_and_tools_are_created_and_edited_with_the_apis_messages() {
    let app = TestApp::spawn().await;
    let account = app.db_account("1").await;
    let mut browser = signed_in(&app, &account).await;

    browser.get("/console/assistants/new").await;
    let page = browser
        .post(
            "/console/assistants",
            &[("name", ""), ("llm_temperature", "hot")],
        )
        .await;
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    // The API's own messages for the same fields (an empty field is left out, not given).
    let (_, api, _) = app
        .post(
            &account.key,
            "/api/user/assistant",
            &json!({ "llm_temperature": "hot" }),
        )
        .await;
    for field in ["name", "llm_temperature"] {
        let message = api["errors"][field][0].as_str().unwrap();
        assert!(
            page.html.contains(&html_escape(message)),
            "{field}: {message}\n{}",
            page.html
        );
    }
    assert_eq!(app.count("assistants").await, 0);

    let page = browser
        .post(
            "/console/assistants",
            &[
                ("name", "Front desk"),
                ("system_prompt", "Be brief."),
                ("llm_temperature", "0.3"),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.html);
    let edit = location(&page).to_owned();
    let page = browser.get("/console/assistants").await;
    assert!(page.html.contains("Front desk"));
    let page = browser.get(&edit).await;
    assert!(page.html.contains("Be brief."));
    let page = browser
        .post(
            &edit,
            &[("name", "Night desk"), ("system_prompt", "Be briefer.")],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert!(browser.get(&edit).await.html.contains("Night desk"));

    browser.get("/console/tools/new").await;
    let page = browser
        .post(
            "/console/tools",
            &[
                ("name", "lookup_order"),
                ("description", "Finds an order"),
                ("endpoint", "https://crm.example.com/orders"),
                ("method", "POST"),
                ("timeout", "5"),
                ("headers", "Authorization: Bearer very-secret-token-1234"),
                ("schema", "[]"),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.html);
    let page = browser.get("/console/tools").await;
    assert!(page.html.contains("lookup_order"));
    assert!(
        !page.html.contains("very-secret-token"),
        "header values are masked"
    );
    assert!(page.html.contains("1234"));

    // The edit form shows the masked value; sent back unchanged, the stored secret stays.
    let edit = link_named(&page.html, "lookup_order");
    let form = browser.get(&edit).await;
    let shown = form
        .html
        .split("<textarea name=\"headers\">")
        .nth(1)
        .and_then(|rest| rest.split("</textarea>").next())
        .unwrap()
        .to_owned();
    assert!(!shown.contains("very-secret-token"), "{shown}");
    let page = browser
        .post(
            &edit,
            &[
                ("name", "lookup_order"),
                ("description", "Finds an order, faster"),
                ("endpoint", "https://crm.example.com/orders"),
                ("method", "POST"),
                ("timeout", "5"),
                ("headers", &html_unescape(&shown)),
                ("schema", "[]"),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.html);
    assert_eq!(
        stored_header_values(&app).await,
        ["Bearer very-secret-token-1234"]
    );

    // Another account's tool is not found.
    let other = app.db_account("1").await;
    let mut stranger = signed_in(&app, &other).await;
    assert_eq!(stranger.get(&edit).await.status, StatusCode::NOT_FOUND);
}

async fn stored_header_values(app: &TestApp) -> Vec<String> {
    use diesel_async::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Value {
        #[diesel(sql_type = diesel::sql_types::Text)]
        value: String,
    }
    let mut conn = app.db.connect().await;
    diesel::sql_query("SELECT h->>'value' AS value FROM tools, jsonb_array_elements(headers) h")
        .load::<Value>(&mut conn)
        .await
        .unwrap()
        .into_iter()
        .map(|v| v.value)
        .collect()
}

#[tokio::test]
async fn the_dashboard_shows_the_busiest_assistants_and_each_days_replies() {
    let app = TestApp::spawn().await;
    let account = app.db_account("5").await;
    let busy = app
        .assistant(&account, &json!({ "name": "Busy desk" }))
        .await;
    let quiet = app
        .assistant(&account, &json!({ "name": "Quiet desk" }))
        .await;
    for (assistant, customer) in [(busy, "a"), (busy, "b"), (busy, "c"), (quiet, "d")] {
        let (status, _) = app.reply(&account.key, assistant, customer, "hi").await;
        assert_eq!(status, StatusCode::OK);
    }
    let mut browser = signed_in(&app, &account).await;
    let html = browser.get("/console").await.html;
    let busy_at = html.find("Busy desk").unwrap();
    let quiet_at = html.find("Quiet desk").unwrap();
    assert!(busy_at < quiet_at, "the busiest first");
    let today = chrono::Utc::now().date_naive();
    assert!(html.contains(&format!("{today}: 4 replies")), "{html}");
}

#[tokio::test]
async fn the_conversation_list_pages_newest_first() {
    let app = TestApp::spawn().await;
    let account = app.db_account("5").await;
    let assistant = app.assistant(&account, &json!({ "name": "Desk" })).await;
    for n in 0..27 {
        let (status, _) = app
            .reply(&account.key, assistant, &format!("customer-{n:02}"), "hi")
            .await;
        assert_eq!(status, StatusCode::OK);
    }
    let mut browser = signed_in(&app, &account).await;
    let first = browser.get("/console/conversations").await.html;
    assert_eq!(first.matches("customer-").count(), 25);
    assert!(first.contains("customer-26") && !first.contains("customer-01"));
    let pager = first.split("aria-label=\"Pages\"").nth(1).unwrap();
    let older = pager
        .split("href=\"/console/conversations?")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .map(html_unescape)
        .unwrap();
    let second = browser
        .get(&format!("/console/conversations?{older}"))
        .await
        .html;
    assert_eq!(second.matches("customer-").count(), 2);
    assert!(second.contains("customer-00") && second.contains("customer-01"));
    assert!(second.contains(">Newer</a>"));
}

#[tokio::test]
async fn conversations_are_listed_searched_taken_over_and_answered() {
    let app = TestApp::spawn().await;
    let account = app.db_account("5").await;
    let assistant = app.assistant(&account, &json!({ "name": "Desk" })).await;
    for customer in ["+4915550001", "anna@example.com"] {
        let (status, _) = app.reply(&account.key, assistant, customer, "Hello?").await;
        assert_eq!(status, StatusCode::OK);
    }
    let mut browser = signed_in(&app, &account).await;
    let page = browser.get("/console/conversations").await;
    assert!(page.html.contains("+4915550001") && page.html.contains("anna@example.com"));
    let page = browser
        .get("/console/conversations?q=ANNA&assistant=&ai=")
        .await;
    assert!(page.html.contains("anna@example.com") && !page.html.contains("+4915550001"));
    let page = browser.get("/console/conversations?ai=off").await;
    assert!(page.html.contains("No conversations match."));

    let link = page_link(&browser.get("/console/conversations?q=anna").await.html);
    let page = browser.get(&link).await;
    assert!(page.html.contains("Hello?"), "{}", page.html);
    assert!(page.html.contains("Take over"));
    assert!(page.html.contains("Message to the customer"));

    let page = browser.post(&format!("{link}/take-over"), &[]).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    let page = browser.get(&format!("{link}/panel")).await;
    assert!(page.html.starts_with("<section id=\"conversation-panel\""));
    assert!(page.html.contains("Hand back to AI"));
    assert!(
        browser
            .get("/console/conversations?ai=off")
            .await
            .html
            .contains("anna@example.com")
    );

    let page = browser
        .post(&format!("{link}/messages"), &[("content", "")])
        .await;
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    let page = browser
        .post(
            &format!("{link}/messages"),
            &[("content", "Anna here, from the shop.")],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    let page = browser.get(&link).await;
    assert!(page.html.contains("Anna here, from the shop."));
    assert!(page.html.contains("Operator"));

    let page = browser.post(&format!("{link}/hand-back"), &[]).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert!(browser.get(&link).await.html.contains("Take over"));

    // Another account's conversation is not found.
    let other = app.db_account("1").await;
    let mut stranger = signed_in(&app, &other).await;
    assert_eq!(stranger.get(&link).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn assets_are_served_under_their_hash_with_matching_integrity() {
    use base64::Engine;
    use sha2::Digest;
    let app = TestApp::spawn().await;
    let mut browser = Browser::new(&app);
    let page = browser.get("/console/sign-in").await;
    let mut checked = 0;
    for tag in page
        .html
        .split('<')
        .filter(|t| t.starts_with("script") || t.starts_with("link rel=\"stylesheet\""))
    {
        let attr = |name: &str| {
            tag.split(&format!("{name}=\""))
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .unwrap()
                .to_owned()
        };
        let (path, integrity) = (
            attr(if tag.starts_with("link") {
                "href"
            } else {
                "src"
            }),
            attr("integrity"),
        );
        let body = browser
            .http
            .get(format!("{}{path}", app.base))
            .send()
            .await
            .unwrap();
        assert!(
            body.headers()["cache-control"]
                .to_str()
                .unwrap()
                .contains("immutable")
        );
        let bytes = body.bytes().await.unwrap();
        let expected = format!(
            "sha384-{}",
            base64::engine::general_purpose::STANDARD.encode(sha2::Sha384::digest(&bytes))
        );
        assert_eq!(integrity, expected, "{path}");
        checked += 1;
    }
    assert_eq!(checked, 3, "htmx, the console's script and its styles");
}

#[tokio::test]
async fn every_page_links_a_favicon_that_is_served() {
    let app = TestApp::spawn().await;
    let account = app.db_account("1").await;
    let mut browser = Browser::new(&app);
    let sign_in = browser.get("/console/sign-in").await.html;
    let icon = icon_path(&sign_in);
    assert!(icon.starts_with("/console/assets/favicon-") && icon.ends_with(".svg"));
    let mut browser = signed_in(&app, &account).await;
    for page in [
        "/console",
        "/console/assistants",
        "/console/tools",
        "/console/conversations",
        "/console/conversations/not-an-id",
    ] {
        let html = browser.get(page).await.html;
        assert_eq!(icon_path(&html), icon, "{page}");
    }
    let served = browser
        .http
        .get(format!("{}{icon}", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(served.status(), StatusCode::OK);
    assert_eq!(served.headers()["content-type"], "image/svg+xml");
    assert!(served.text().await.unwrap().starts_with("<svg"));
}

fn icon_path(html: &str) -> String {
    html.split("<link rel=\"icon\" type=\"image/svg+xml\" href=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no icon in {html}"))
        .to_owned()
}

#[tokio::test]
async fn the_sign_in_page_sends_a_signed_in_operator_back_into_the_console() {
    let app = TestApp::spawn().await;
    let account = app.db_account("1").await;
    let mut browser = signed_in(&app, &account).await;
    let page = browser.get("/console/sign-in").await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(location(&page), "/console");

    browser.get("/console").await;
    let page = browser.post("/console/sign-out", &[]).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    let page = browser.get("/console/sign-in").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.html.contains("API key"));
    // A cookie of no live session is no operator either.
    let mut stranger = Browser::new(&app);
    stranger
        .cookies
        .push(("anyreply_console".to_owned(), "forged".to_owned()));
    assert_eq!(
        stranger.get("/console/sign-in").await.status,
        StatusCode::OK
    );
}

/// Sets the costs of a conversation's replies, oldest first, and its total, as exactly as
/// the settlement would have written them; the account's balance too.
async fn seed_costs(
    app: &TestApp,
    account: &TestAccount,
    conversation: &str,
    costs: &[&str],
    balance: &str,
) {
    use diesel_async::RunQueryDsl;
    let mut conn = app.db.connect().await;
    let subunits: Vec<i64> = costs
        .iter()
        .map(|c| crate::util::money(c).subunits())
        .collect();
    diesel::sql_query(
        "UPDATE messages m SET cost = ($2::int8[])[seeded.n]
         FROM (SELECT id, row_number() OVER (ORDER BY seq) AS n FROM messages
               WHERE conversation_id = $1 AND role = 'assistant') AS seeded
         WHERE m.id = seeded.id",
    )
    .bind::<diesel::sql_types::Uuid, _>(conversation.parse::<uuid::Uuid>().unwrap())
    .bind::<diesel::sql_types::Array<diesel::sql_types::Int8>, _>(&subunits)
    .execute(&mut conn)
    .await
    .unwrap();
    diesel::sql_query("UPDATE conversations SET total_cost = $2 WHERE id = $1")
        .bind::<diesel::sql_types::Uuid, _>(conversation.parse::<uuid::Uuid>().unwrap())
        .bind::<diesel::sql_types::Int8, _>(subunits.iter().sum::<i64>())
        .execute(&mut conn)
        .await
        .unwrap();
    diesel::sql_query("UPDATE accounts SET balance = $2 WHERE id = $1")
        .bind::<diesel::sql_types::Int8, _>(account.id)
        .bind::<diesel::sql_types::Int8, _>(crate::util::money(balance).subunits())
        .execute(&mut conn)
        .await
        .unwrap();
}

/// Amounts below 0.00001 (a float prints them `9.15e-06`) and with 16 significant digits
/// (a float loses the last ones) show exactly on every page that shows money.
#[tokio::test]
async fn every_page_shows_amounts_exactly() {
    let app = TestApp::spawn().await;
    let account = app.db_account("100").await;
    let assistant = app
        .assistant(&account, &json!({ "name": "Exact desk" }))
        .await;
    for message in ["one", "two", "three"] {
        let (status, body) = app
            .reply(&account.key, assistant, "+4915550042", message)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (status, found, _) = app
        .get(
            &account.key,
            "/api/user/conversations?external_identifier=%2B4915550042",
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let conversation = found["data"][0]["id"].as_str().unwrap().to_owned();
    let costs = ["0.00000001", "0.00000915", "12345678.12345678"];
    let total = "12345678.12346594";
    seed_costs(&app, &account, &conversation, &costs, "98765432.10000009").await;
    let (status, _, _) = app
        .post(&account.key, "/api/user/tools", &json!({
            "name": "lookup", "description": "Looks up", "endpoint": "https://crm.example.com/x",
            "method": "GET", "headers": [{ "name": "Authorization", "value": "Bearer secret-token-1" }]
        }))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let mut browser = signed_in(&app, &account).await;

    // The conversation, whole and as the panel that reloads itself.
    let link = format!("/console/conversations/{conversation}");
    for path in [link.clone(), format!("{link}/panel")] {
        let page = browser.get(&path).await;
        assert_eq!(page.status, StatusCode::OK, "{path}: {}", page.html);
        for cost in costs {
            assert_eq!(
                page.html.matches(&format!("· cost {cost}</div>")).count(),
                1,
                "{path}: {cost} in {}",
                page.html
            );
        }
        assert!(
            page.html.contains(&format!("Cost {total}</span>")),
            "{}",
            page.html
        );
    }
    // The list.
    let page = browser.get("/console/conversations").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.html.contains(&format!("<td>{total}</td>")),
        "{}",
        page.html
    );
    assert!(
        page.html.contains("<td>6</td>"),
        "six messages: {}",
        page.html
    );

    // The dashboard: balance, sums, the busiest assistant, the day's bar and the cost axis.
    let page = browser.get("/console").await;
    assert_eq!(page.status, StatusCode::OK);
    let html = page.html;
    assert!(
        html.contains("data-testid=\"balance\">98765432.10000009</div>"),
        "{html}"
    );
    assert!(
        html.contains(&format!("<div class=\"value\">{total}</div>")),
        "{html}"
    );
    assert!(html.contains("<div class=\"value\">3</div>"), "{html}");
    assert!(
        html.contains(&format!("<td>3</td><td>{total}</td>")),
        "{html}"
    );
    let today = chrono::Utc::now().date_naive();
    assert!(
        html.contains(&format!("{today}: 3 replies, cost {total}")),
        "{html}"
    );
    for tick in [total, "6172839.06173297", "0"] {
        assert!(
            html.contains(&format!("text-anchor=\"start\">{tick}</text>")),
            "cost tick {tick}: {html}"
        );
    }

    // The assistants with their replies and cost.
    let page = browser.get("/console/assistants").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.html.contains(&format!("<td>3</td><td>{total}</td>")),
        "{}",
        page.html
    );
    let page = browser
        .get(&format!("/console/assistants/{assistant}"))
        .await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.html.contains("value=\"Exact desk\""));
    assert_eq!(
        browser.get("/console/assistants/new").await.status,
        StatusCode::OK
    );

    // The tools (no money; their masked header values).
    let page = browser.get("/console/tools").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.html.contains("lookup") && !page.html.contains("secret-token-1"),
        "{}",
        page.html
    );
    let tool = link_named(&page.html, "lookup");
    let page = browser.get(&tool).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.html.contains("value=\"lookup\"") && !page.html.contains("secret-token-1"));
    assert_eq!(
        browser.get("/console/tools/new").await.status,
        StatusCode::OK
    );

    // The API says the same amounts, as exact JSON numbers.
    let response = app
        .http
        .get(format!("{}/api/conversations/{conversation}", app.base))
        .bearer_auth(&account.key)
        .send()
        .await
        .unwrap();
    let text = response.text().await.unwrap();
    for cost in costs {
        assert!(text.contains(&format!("\"cost\":{cost},")), "{text}");
    }
    assert!(text.contains(&format!("\"total_cost\":{total},")), "{text}");
}

#[tokio::test]
async fn the_dashboard_chart_has_axes_labels_and_a_legend() {
    let app = TestApp::spawn().await;
    let account = app.db_account("5").await;
    let assistant = app.assistant(&account, &json!({ "name": "Desk" })).await;
    for customer in ["a", "b", "c", "d"] {
        let (status, _) = app.reply(&account.key, assistant, customer, "hi").await;
        assert_eq!(status, StatusCode::OK);
    }
    let mut browser = signed_in(&app, &account).await;
    let html = browser.get("/console").await.html;
    let svg = html
        .split("<svg class=\"chart\"")
        .nth(1)
        .and_then(|rest| rest.split("</svg>").next())
        .unwrap();
    // Three axes: replies (left), cost (right), days (below), with their titles.
    assert_eq!(
        svg.matches("<line class=\"axis\" x1=\"56\" x2=\"56\"")
            .count(),
        1,
        "{svg}"
    );
    assert!(
        svg.contains(">Replies</text>") && svg.contains(">Cost</text>"),
        "{svg}"
    );
    // The replies' ticks: 0, half and the most of a day.
    for tick in ["0", "2", "4"] {
        assert!(
            svg.contains(&format!("text-anchor=\"end\">{tick}</text>")),
            "{tick}: {svg}"
        );
    }
    // 4 replies at 0.002 each.
    for tick in ["0", "0.004", "0.008"] {
        assert!(
            svg.contains(&format!("text-anchor=\"start\">{tick}</text>")),
            "{tick}: {svg}"
        );
    }
    // The days: the first, every week, today.
    let today = chrono::Utc::now().date_naive();
    let first = today - chrono::Duration::days(29);
    for day in [first, first + chrono::Duration::days(7), today] {
        let label = day.format("%b %-d").to_string();
        assert!(
            svg.contains(&format!("text-anchor=\"middle\">{label}</text>")),
            "{label}: {svg}"
        );
    }
    assert!(svg.contains("<g class=\"legend\">"), "{svg}");
    assert!(svg.contains(">Replies per day (left axis)</text>"), "{svg}");
    assert!(svg.contains(">Cost per day (right axis)</text>"), "{svg}");
}

fn page_link(html: &str) -> String {
    let start = html.find("href=\"/console/conversations/").unwrap() + "href=\"".len();
    html[start..].split('"').next().unwrap().to_owned()
}

/// Where the link reading `text` goes.
fn link_named(html: &str, text: &str) -> String {
    let end = html.find(&format!("\">{text}</a>")).unwrap();
    let start = html[..end].rfind("href=\"").unwrap() + "href=\"".len();
    html[start..end].to_owned()
}

fn html_unescape(text: &str) -> String {
    text.replace("&#34;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&#38;", "&")
        .replace("&amp;", "&")
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&#34;")
        .replace('\'', "&#39;")
}

/// The forms' bodies are checked as the API's are: a NUL deep in a tool's schema is a field
/// error on the form, not a fault.
#[tokio::test]
async fn a_nul_in_a_forms_nested_json_is_refused_on_the_form() {
    let app = TestApp::spawn().await;
    let account = app.db_account("1").await;
    let mut browser = signed_in(&app, &account).await;
    browser.get("/console/tools/new").await;
    let page = browser
        .post(
            "/console/tools",
            &[
                ("name", "lookup_order"),
                ("description", "Finds an order"),
                ("endpoint", "https://crm.example.com/orders"),
                ("method", "POST"),
                ("timeout", "5"),
                (
                    "schema",
                    r#"[{"name": "order", "type": "string", "description": "an \u0000 order"}]"#,
                ),
            ],
        )
        .await;
    assert_eq!(
        page.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        page.html
    );
    assert!(page.html.contains("NUL"), "{}", page.html);
    assert_eq!(app.count("tools").await, 0);
}

const HANDBOOK: &str = "# Shop handbook 🛒

## Returns

You may return any item within 30 days of delivery for a full refund.

## Shipping

We ship to Germany, Austria and Switzerland. Shipping to Austria takes three to five working days and costs 4.90 EUR.
";

impl Browser {
    /// Posts `fields` and `file` (in `file`) as `multipart/form-data`, with `csrf` as the
    /// form's token field when given.
    async fn post_upload(
        &mut self,
        path: &str,
        fields: &[(&str, &str)],
        file: Option<(&str, &[u8])>,
        csrf: Option<&str>,
    ) -> Page {
        let boundary = "console-test-boundary-51c2";
        let mut body = Vec::new();
        let mut fields: Vec<(&str, &str)> = fields.to_vec();
        if let Some(token) = csrf {
            fields.insert(0, ("csrf", token));
        }
        for (name, value) in fields {
            body.extend_from_slice(
                format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n")
                    .as_bytes(),
            );
        }
        if let Some((file_name, bytes)) = file {
            body.extend_from_slice(
                format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{file_name}\"\r\nContent-Type: text/plain\r\n\r\n")
                    .as_bytes(),
            );
            body.extend_from_slice(bytes);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .header("cookie", self.cookie_header())
            .header(
                "content-type",
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(body)
            .send()
            .await
            .unwrap();
        self.keep(response).await
    }
}

async fn knowledge_base_of(app: &TestApp, account: &TestAccount, name: &str) -> i64 {
    let (status, body, _) = app
        .post(
            &account.key,
            "/api/user/knowledgebases",
            &json!({"name": name, "description": "Returns & shipping", "language": "english"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["data"]["id"].as_i64().unwrap()
}

/// The knowledge base's documents, once none is `processing`.
async fn processed_documents(app: &TestApp, key: &str, base: i64) -> Vec<serde_json::Value> {
    let documents = || async {
        let (status, body, _) = app
            .get(key, &format!("/api/user/knowledgebases/{base}/documents"))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["data"].as_array().unwrap().clone()
    };
    anyreply_server::testing::eventually("every document processed", || async {
        documents()
            .await
            .iter()
            .all(|d| d["status"] != "processing")
    })
    .await;
    documents().await
}

#[tokio::test]
async fn knowledge_bases_are_listed_created_and_deleted_with_the_apis_checks() {
    let app = TestApp::spawn().await;
    let account = app.db_account("1").await;
    let listed = knowledge_base_of(&app, &account, "Shop FAQ 🛒").await;
    let mut browser = signed_in(&app, &account).await;

    let page = browser.get("/console/knowledge").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.html.contains(">Knowledge</a>"), "{}", page.html);
    assert!(
        page.html.contains(&format!(
            "<a href=\"/console/knowledge/{listed}\">Shop FAQ 🛒</a>"
        )),
        "{}",
        page.html
    );
    for shown in ["Returns &#38; shipping", "english", "Empty"] {
        assert!(page.html.contains(shown), "{shown}: {}", page.html);
    }
    assert!(
        page.html.contains("<option value=\"german\""),
        "{}",
        page.html
    );

    // An unknown language: the API's message, next to the field.
    let page = browser
        .post(
            "/console/knowledge",
            &[("name", "Handbook"), ("language", "klingon")],
        )
        .await;
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    let (_, api, _) = app
        .post(
            &account.key,
            "/api/user/knowledgebases",
            &json!({"name": "Handbook", "language": "klingon"}),
        )
        .await;
    let message = api["errors"]["language"][0].as_str().unwrap();
    assert!(
        page.html.contains(&html_escape(message)),
        "{message}\n{}",
        page.html
    );
    // A NUL is a form error, not a fault.
    let page = browser
        .post(
            "/console/knowledge",
            &[("name", "Hand\0book"), ("language", "simple")],
        )
        .await;
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.html.contains("NUL"), "{}", page.html);
    // Without the token, or with another: 403 and nothing made.
    let page = browser
        .post_form("/console/knowledge", &[("name", "Sneaky")], false)
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    let page = browser
        .post_form(
            "/console/knowledge",
            &[("name", "Sneaky"), ("csrf", "forged")],
            false,
        )
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert_eq!(app.count("knowledge_bases").await, 1);

    let page = browser
        .post(
            "/console/knowledge",
            &[
                ("name", "Handbook 📘"),
                ("description", "Opening hours"),
                ("language", "german"),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.html);
    let created = location(&page).to_owned();
    let page = browser.get(&created).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.html.contains("<h1>Handbook 📘</h1>"), "{}", page.html);
    let (_, list, _) = app.get(&account.key, "/api/user/knowledgebases").await;
    assert_eq!(list["data"][1]["name"], "Handbook 📘");
    assert_eq!(list["data"][1]["language"], "german");
    assert_eq!(list["data"][1]["description"], "Opening hours");

    let page = browser.post(&format!("{created}/delete"), &[]).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(location(&page), "/console/knowledge");
    assert_eq!(app.count("knowledge_bases").await, 1);
    assert_eq!(browser.get(&created).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_file_uploaded_in_the_console_is_processed_and_its_passages_searched() {
    let app = TestApp::spawn().await;
    let account = app.db_account("1").await;
    let base = knowledge_base_of(&app, &account, "Handbook").await;
    let page_path = format!("/console/knowledge/{base}");
    let upload_path = format!("{page_path}/documents");
    let mut browser = signed_in(&app, &account).await;
    let page = browser.get(&page_path).await;
    assert!(page.html.contains("enctype=\"multipart/form-data\""));
    let token = browser.csrf.clone();

    // Without the token, or with another: 403 and nothing stored.
    let file = Some(("handbook.md", HANDBOOK.as_bytes()));
    let page = browser
        .post_upload(&upload_path, &[("type", "txt")], file, None)
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    let page = browser
        .post_upload(&upload_path, &[("type", "txt")], file, Some("forged"))
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert_eq!(app.count("knowledge_documents").await, 0);

    // No name: the file's.
    let page = browser
        .post_upload(
            &upload_path,
            &[("name", ""), ("type", "txt")],
            file,
            Some(&token),
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.html);
    assert_eq!(location(&page), page_path);
    let documents = processed_documents(&app, &account.key, base).await;
    assert_eq!(documents[0]["name"], "handbook.md");
    assert_eq!(documents[0]["status"], "active", "{documents:?}");
    let page = browser.get(&page_path).await;
    assert!(!page.html.contains("http-equiv=\"refresh\""));
    for shown in [
        "handbook.md",
        "TXT",
        "Active",
        &format!("<td>{}</td>", documents[0]["passages_count"]),
    ] {
        assert!(page.html.contains(shown), "{shown}: {}", page.html);
    }

    // What an assistant would read.
    let page = browser
        .get(&format!("{page_path}?q=Do+you+ship+to+Austria%3F"))
        .await;
    assert_eq!(page.status, StatusCode::OK);
    let results = page.html.split("<h2>Upload a file</h2>").next().unwrap();
    assert!(
        results
            .contains("Shipping to Austria takes three to five working days and costs 4.90 EUR."),
        "{results}"
    );
    assert!(results.contains("Shop handbook 🛒"), "{results}");
    assert!(results.contains("score "), "{results}");
    let (_, api, _) = app
        .post(
            &account.key,
            &format!("/api/user/knowledgebases/{base}/search"),
            &json!({"query": "Do you ship to Austria?"}),
        )
        .await;
    let score = api["data"][0]["score"].as_f64().unwrap();
    assert!(results.contains(&format!("score {score}")), "{results}");
    // An empty search: the API's message.
    let page = browser.get(&format!("{page_path}?q=")).await;
    assert!(page.html.contains("field-error"), "{}", page.html);

    // A file that cannot be read fails, and the page says why.
    let page = browser
        .post_upload(
            &upload_path,
            &[("name", "utf16.txt"), ("type", "txt")],
            Some(("utf16.txt", b"H\0e\0l\0l\0o\0")),
            Some(&token),
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.html);
    let documents = processed_documents(&app, &account.key, base).await;
    assert_eq!(documents[1]["status"], "failed");
    let reason = documents[1]["reason"].as_str().unwrap();
    let page = browser.get(&page_path).await;
    assert!(
        page.html.contains(&format!(
            "<p class=\"notice\" role=\"alert\"><strong>Failed:</strong> {}</p>",
            html_escape(reason)
        )),
        "{reason}\n{}",
        page.html
    );

    // Refused as the API refuses: a NUL in a field, an empty file, a bad website.
    let page = browser
        .post_upload(
            &upload_path,
            &[("name", "bad\0name"), ("type", "txt")],
            file,
            Some(&token),
        )
        .await;
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.html.contains("NUL"), "{}", page.html);
    let page = browser
        .post_upload(
            &upload_path,
            &[("type", "txt")],
            Some(("empty.txt", b"")),
            Some(&token),
        )
        .await;
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.html.contains("The file is empty."), "{}", page.html);
    let page = browser
        .post(
            &format!("{page_path}/websites"),
            &[("url", "ftp://x"), ("relative_links_limit", "51")],
        )
        .await;
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    let (_, api, _) = app
        .post(
            &account.key,
            &format!("/api/user/knowledgebases/{base}/documents"),
            &json!({"name": "ftp://x", "type": "website", "url": "ftp://x", "relative_links_limit": 51}),
        )
        .await;
    for field in ["url", "relative_links_limit"] {
        let message = api["errors"][field][0].as_str().unwrap();
        assert!(
            page.html.contains(&html_escape(message)),
            "{field}: {message}\n{}",
            page.html
        );
    }
    assert_eq!(app.count("knowledge_documents").await, 2);

    // Another account sees none of it.
    let other = app.db_account("1").await;
    let mut stranger = signed_in(&app, &other).await;
    assert_eq!(stranger.get(&page_path).await.status, StatusCode::NOT_FOUND);
    let stranger_token = stranger.csrf.clone();
    let page = stranger
        .post_upload(
            &upload_path,
            &[("type", "txt")],
            file,
            Some(&stranger_token),
        )
        .await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
    let document = documents[0]["id"].as_i64().unwrap();
    let delete = format!("{page_path}/documents/{document}/delete");
    assert_eq!(
        stranger.post(&delete, &[]).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(app.count("knowledge_documents").await, 2);

    let page = browser.post(&delete, &[]).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(app.count("knowledge_documents").await, 1);

    // Files past the other forms' body limit are taken, up to the API's 20 MB.
    let large = vec![b'a'; 3 * 1024 * 1024];
    let page = browser
        .post_upload(
            &upload_path,
            &[("type", "pdf")],
            Some(("large.pdf", &large)),
            Some(&token),
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.html);
    let too_large = vec![b'a'; 20 * 1024 * 1024 + 1];
    let page = browser
        .post_upload(
            &upload_path,
            &[("type", "txt")],
            Some(("too-large.txt", &too_large)),
            Some(&token),
        )
        .await;
    assert_eq!(page.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(page.html.contains("at most 20 MB"), "{}", page.html);
    assert_eq!(app.count("knowledge_documents").await, 2);
}

#[tokio::test]
async fn the_assistant_form_chooses_a_knowledge_base_and_how_it_is_read() {
    let app = TestApp::spawn().await;
    let account = app.db_account("1").await;
    let base = knowledge_base_of(&app, &account, "Handbook 📘").await;
    let other = app.db_account("1").await;
    let strangers = knowledge_base_of(&app, &other, "Theirs").await;
    let mut browser = signed_in(&app, &account).await;

    let page = browser.get("/console/assistants/new").await;
    assert!(
        page.html
            .contains(&format!("<option value=\"{base}\">Handbook 📘</option>")),
        "{}",
        page.html
    );
    assert!(!page.html.contains("Theirs"));
    let page = browser
        .post(
            "/console/assistants",
            &[
                ("name", "Front desk"),
                ("knowledgebase_id", &base.to_string()),
                ("knowledgebase_mode", "function_call"),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.html);
    let edit = location(&page).to_owned();
    let (_, list, _) = app.get(&account.key, "/api/user/assistants/get").await;
    assert_eq!(list["data"][0]["knowledgebase_id"], base, "{list}");
    assert_eq!(list["data"][0]["knowledgebase_mode"], "function_call");
    let page = browser.get(&edit).await;
    assert!(
        page.html.contains(&format!(
            "<option value=\"{base}\" selected>Handbook 📘</option>"
        )),
        "{}",
        page.html
    );
    assert!(
        page.html
            .contains("<option value=\"function_call\" selected>")
    );

    // Another account's knowledge base is refused as the API refuses it.
    let page = browser
        .post(
            &edit,
            &[
                ("name", "Front desk"),
                ("knowledgebase_id", &strangers.to_string()),
            ],
        )
        .await;
    assert_eq!(
        page.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        page.html
    );
    let (_, list, _) = app.get(&account.key, "/api/user/assistants/get").await;
    assert_eq!(list["data"][0]["knowledgebase_id"], base);

    // None chosen: none.
    let page = browser
        .post(
            &edit,
            &[
                ("name", "Front desk"),
                ("knowledgebase_id", ""),
                ("knowledgebase_mode", "prompt"),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.html);
    let (_, list, _) = app.get(&account.key, "/api/user/assistants/get").await;
    assert_eq!(list["data"][0]["knowledgebase_id"], serde_json::Value::Null);
    assert_eq!(list["data"][0]["knowledgebase_mode"], "prompt");
}

#[tokio::test]
async fn a_knowledge_base_page_refreshes_itself_only_while_a_document_is_processing() {
    let app = TestApp::spawn().await;
    let account = app.db_account("1").await;
    let base = knowledge_base_of(&app, &account, "Handbook").await;
    let page_path = format!("/console/knowledge/{base}");
    let mut browser = signed_in(&app, &account).await;
    let page = browser.get(&page_path).await;
    assert!(!page.html.contains("http-equiv=\"refresh\""));

    // Leased by some process for an hour, so that it stays `processing` here.
    let mut conn = app.db.connect().await;
    {
        use diesel_async::RunQueryDsl;
        diesel::sql_query(
            "INSERT INTO knowledge_documents (knowledge_base_id, account_id, name, kind, content, lease_until)
             VALUES ($1, $2, 'notes.txt', 'txt', 'Notes', now() + interval '1 hour')",
        )
        .bind::<diesel::sql_types::Int8, _>(base)
        .bind::<diesel::sql_types::Int8, _>(account.id)
        .execute(&mut conn)
        .await
        .unwrap();
    }
    let page = browser.get(&page_path).await;
    assert!(
        page.html
            .contains("<noscript><meta http-equiv=\"refresh\" content=\"3\"></noscript>"),
        "{}",
        page.html
    );
    assert!(page.html.contains("hx-trigger=\"load delay:3s\""));
    assert!(page.html.contains("Processing"));
}
