//! A client of the hub's JSON API: no cookie jar at all, only a bearer token (or none).

use super::Visitor;
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use std::net::SocketAddr;

pub struct Api {
    pub addr: SocketAddr,
    pub token: Option<String>,
    http: reqwest::Client,
}

/// One API answer, its body parsed as JSON (Null when empty or not JSON).
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub json: serde_json::Value,
    pub body: String,
}

impl Answer {
    /// The error code of an error answer.
    pub fn code(&self) -> &str {
        self.json["error"]["code"].as_str().unwrap_or("")
    }
}

impl Api {
    pub fn new(addr: SocketAddr, token: Option<&str>) -> Self {
        Self {
            addr,
            token: token.map(str::to_string),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
        }
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Answer {
        let mut request = self
            .http
            .request(method, format!("http://{}{path}", self.addr));
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("API request");
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.text().await.unwrap();
        let json = serde_json::from_str(&body).unwrap_or(serde_json::Value::Null);
        Answer {
            status,
            headers,
            json,
            body,
        }
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.send(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: serde_json::Value) -> Answer {
        self.send(Method::POST, path, Some(body)).await
    }

    pub async fn patch(&self, path: &str, body: serde_json::Value) -> Answer {
        self.send(Method::PATCH, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Answer {
        self.send(Method::DELETE, path, None).await
    }
}

/// Makes a token on the visitor's account page (which asks for their `password`) and
/// returns it, as shown that one time.
pub async fn make_token(visitor: &Visitor, password: &str, name: &str, scope: &str) -> String {
    let page = visitor
        .post_form(
            "/account/tokens",
            &[
                ("token_name", name),
                ("scope", scope),
                ("expires", ""),
                ("token_current", password),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    page.attr("#new-token-value", "value")
        .expect("the new token is shown")
}
