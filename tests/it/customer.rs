//! `privnum customer`, the demo customer: a real server pushes to it over loopback; it answers the
//! X-mode Block callin from its table and prints every push with whose signature it carries.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use privnum::cli::customer::{push_addresses, Answers, Customer};
use reqwest::Method;
use serde_json::json;

use crate::support::{eventually, TestServer, X_APP};

const X: &str = "+8617500000001";
const A: &str = "+8613800000001";
const B: &str = "+8613900000002";

/// What the customer printed, shared with the test.
#[derive(Clone, Default)]
struct Printed(Arc<Mutex<Vec<u8>>>);

impl Write for Printed {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Printed {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[tokio::test]
async fn the_demo_customer_answers_block_callins_from_its_table_and_prints_every_push() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = TestServer::builder()
        .cdr_flush_ms(50)
        .configure(|config| {
            let app = config.apps.iter_mut().find(|app| app.app_key == X_APP.0).unwrap();
            app.callin_url = format!("{base}/callin");
            app.call_event_url = format!("{base}/events");
            app.cdr_url = format!("{base}/cdr");
        })
        .start()
        .await;
    let answers = Answers::from_items(&[format!("{A}={B}")]).unwrap();
    let printed = Printed::default();
    let customer = Customer::new(server.config.apps.clone(), answers, Box::new(printed.clone()));
    tokio::spawn(customer.serve(listener));

    let connect = server.switch_call(A, X).await;
    assert_eq!((connect.body["action"].as_str(), connect.body["callee"].as_str()), (Some("connect"), Some(B)));
    let session = connect.body["sessionId"].as_str().unwrap().to_owned();
    let stranger = server.switch_call("+8613700000009", X).await;
    assert_eq!(stranger.body["stateCode"], 8014, "a caller the table does not name is closed");
    let hang_up = json!({"event": "disconnect", "releaseSide": "caller", "stateCode": 0});
    server.switch(Method::POST, &format!("/calls/{session}/events"), &hang_up).await;

    let text = eventually(Duration::from_secs(5), || async {
        let text = printed.text();
        (text.matches("  CDR  session").count() == 2).then_some(text)
    })
    .await
    .unwrap_or_else(|| panic!("both CDRs printed: {}", printed.text()));
    assert!(text.contains(&format!("POST /callin  signed by {}", X_APP.0)), "{text}");
    assert!(
        text.contains(&format!(r#"answered: {{"connectInfo":{{"calleeNum":"{B}"}},"operation":"connect"}}"#)),
        "{text}"
    );
    assert!(text.contains(r#"answered: {"operation":"close"}"#), "{text}");
    assert!(text.contains(&format!("disconnect  session {session}")), "{text}");
    assert!(!text.contains("BAD SIGNATURE"), "{text}");
}

#[test]
fn answers_and_addresses_are_read_strictly() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("answers.txt");
    std::fs::write(&file, "# caller  callee\n+8613800000001 +8613900000002\n* close\n+8613800000003 nobody\n").unwrap();
    let mut answers = Answers::default();
    let err = answers.add_file(&file).unwrap_err();
    assert!(format!("{err:#}").contains("answers.txt:4"), "{err:#}");
    assert!(Answers::from_items(&["+8613800000001".into()]).is_err(), "no = is refused");
    let answers = Answers::from_items(&["*=+8613900000002".into()]).unwrap();
    assert_eq!(answers.reply("+8613000000000")["connectInfo"]["calleeNum"], "+8613900000002");

    let config =
        privnum::config::Config::load_required(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("privnum.toml"))
            .unwrap();
    let addresses = push_addresses(&config.apps).unwrap();
    assert_eq!(addresses, ["127.0.0.1:9000".parse().unwrap()], "the demo apps all push to :9000");
}
