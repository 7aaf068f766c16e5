//! Single use is held by the database: concurrent redemptions have exactly one winner.

use crate::backend_tests;
use crate::helpers::{TestApp, random_email};
use futures_util::future::join_all;
use reqwest::StatusCode;

backend_tests!(fifty_presses_of_one_link_give_one_code, fifty_exchanges_of_one_code_give_one_token);

async fn fifty_presses_of_one_link_give_one_code(app: TestApp) {
    let client = app.client().await;
    let (_, link, _) = app.link_without_mail(&client, &random_email()).await;
    let results = join_all((0..50).map(|_| app.press(&link))).await;
    let won = results.iter().filter(|(s, _)| *s == StatusCode::SEE_OTHER).count();
    let gone = results.iter().filter(|(s, _)| *s == StatusCode::GONE).count();
    assert_eq!((won, gone), (1, 49), "{:?}", results.iter().map(|r| r.0).collect::<Vec<_>>());
}

async fn fifty_exchanges_of_one_code_give_one_token(app: TestApp) {
    let client = app.client().await;
    let (_, link, _) = app.link_without_mail(&client, &random_email()).await;
    let code = app.code_from(&link).await;
    let results = join_all((0..50).map(|_| app.exchange(&client, &code))).await;
    let statuses: Vec<StatusCode> = results.iter().map(|r| r.status()).collect();
    let ok = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    let refused = statuses.iter().filter(|s| **s == StatusCode::BAD_REQUEST).count();
    assert_eq!((ok, refused), (1, 49), "{statuses:?}");
}
