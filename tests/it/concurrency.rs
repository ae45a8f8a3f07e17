//! Racing clients: no X is handed out beyond its capacity, no user number twice on one X.

use std::sync::Arc;

use reqwest::Method;
use serde_json::json;

use crate::support::{TestServer, AXB_APP, AXB_PATH};

async fn race(server: Arc<TestServer>, bodies: Vec<serde_json::Value>) -> Vec<(u16, String)> {
    let mut tasks = tokio::task::JoinSet::new();
    for body in bodies {
        let server = server.clone();
        tasks.spawn(async move {
            let answer = server.bind_axb(body).await;
            (answer.status.as_u16(), answer.code().to_owned())
        });
    }
    let mut outcomes = Vec::new();
    while let Some(outcome) = tasks.join_next().await {
        outcomes.push(outcome.expect("task"));
    }
    outcomes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_for_the_last_free_x_of_an_area() {
    let server = Arc::new(TestServer::builder().axb_max_pairs_per_x(3).start().await);
    // Area 0756 has exactly one X, with room for 3 pairs; 48 clients want it at once.
    let bodies = (0..48)
        .map(
            |i| json!({"areaCode": "0756", "callerNum": format!("+86138{i:08}"), "calleeNum": format!("+86139{i:08}")}),
        )
        .collect();
    let outcomes = race(server.clone(), bodies).await;
    let won = outcomes.iter().filter(|(status, code)| *status == 200 && code == "0").count();
    let refused = outcomes.iter().filter(|(status, code)| *status == 403 && code == "1012008").count();
    assert_eq!((won, refused), (3, 45), "{outcomes:?}");
    assert_eq!(server.state().store.bindings().pairs_on("+8617000000005").unwrap(), 3);
    let listed = server.call(AXB_APP, Method::GET, &format!("{AXB_PATH}?relationNum=%2B8617000000005"), None).await;
    assert_eq!(listed.body["totalCount"], 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_to_bind_one_user_number_twice_on_one_x() {
    let server = Arc::new(TestServer::start().await);
    let bodies = (0..32)
        .map(|i| json!({"relationNum": "+8617000000001", "callerNum": "+8613800000001", "calleeNum": format!("+86139{i:08}")}))
        .collect();
    let outcomes = race(server.clone(), bodies).await;
    let won = outcomes.iter().filter(|(_, code)| code == "0").count();
    let refused = outcomes.iter().filter(|(status, code)| *status == 403 && code == "1012010").count();
    assert_eq!((won, refused), (1, 31), "{outcomes:?}");
    assert_eq!(server.state().store.bindings().pairs_on("+8617000000001").unwrap(), 1);
}
