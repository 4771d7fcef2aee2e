//! The web console in headless Chromium (Debian's `chromium`): the page is loaded from a running
//! broker with real records (uploaded to the object store) and a lagging group, its script runs, and
//! the DOM it leaves behind shows the topic's partitions with their offsets and tiering state, and the
//! group's lag.

use std::process::Command;

use serde_json::json;

use crate::common::{TestBroker, unique_topic};
use crate::http_client::{get, post_json};

/// Loads `url` in headless Chromium and returns the DOM after the page's scripts ran (virtual
/// time lets its fetches complete without the test sleeping).
fn rendered_dom(url: &str) -> String {
    let browser = std::env::var("ZOMBI_CHROMIUM").unwrap_or_else(|_| "chromium".into());
    let profile = tempfile::tempdir().expect("profile dir");
    let output = Command::new(&browser)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(["--virtual-time-budget=5000", "--dump-dom", url])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {browser} (scripts/deps.sh installs Debian's chromium): {e}"));
    assert!(output.status.success(), "chromium failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The `<tr ...>` element that starts with `opening`, up to its end tag.
fn row<'a>(dom: &'a str, opening: &str) -> &'a str {
    let start = dom.find(opening).unwrap_or_else(|| panic!("no row {opening} in\n{dom}"));
    let end = dom[start..].find("</tr>").map_or(dom.len(), |i| start + i);
    &dom[start..end]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_topics_offsets_and_group_lag() {
    // Tiering uploads what is older than 300 ms, so the page has a remote end to show; the
    // Iceberg sink commits every 100 ms, so it has a table end and freshness.
    let broker = TestBroker::start(&[
        "--remote-log-manager-task-interval-ms",
        "50",
        "--log-roll-ms",
        "300",
        "--iceberg-commit-interval-ms",
        "100",
    ]);
    let topic = unique_topic("console");
    crate::http::create_topic(&broker, &topic, 2, &[]).await;
    let records: Vec<_> = (0..3).map(|i| json!({"partition": 0, "value": format!("order-{i}")})).collect();
    assert_eq!(post_json(&broker.http, &format!("/events/{topic}"), &json!(records)).status, 200);
    let deadline = std::time::Instant::now() + crate::common::WAIT_MAX;
    while !get(&broker.http, "/admin/tiering").text().contains("\"remote_end_offset\":3") {
        assert!(std::time::Instant::now() < deadline, "the records were never uploaded");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    while !get(&broker.http, "/admin/iceberg").text().contains("\"committed_offset\":3") {
        assert!(std::time::Instant::now() < deadline, "the records never reached the Iceberg table");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let commit = json!({"offsets": [{"topic": topic, "partition": 0, "offset": 1}]});
    assert_eq!(post_json(&broker.http, "/consumers/console-readers/offsets", &commit).status, 200);
    // A transaction left open on another topic (its producer lives until the test ends).
    use rdkafka::producer::Producer;
    let txn_topic = unique_topic("console-txn");
    crate::http::create_topic(&broker, &txn_topic, 2, &[]).await;
    let open_txn = crate::transactions::transactional_producer(&broker, "console-txn", &[]);
    open_txn.begin_transaction().expect("begin");
    crate::transactions::send(&open_txn, &txn_topic, 1, "open");
    open_txn.flush(std::time::Duration::from_secs(30)).expect("flush");

    let dom = rendered_dom(&format!("http://{}/", broker.http));
    assert!(dom.contains("data-loaded=\"true\""), "the page's script did not finish a refresh:\n{dom}");
    let partition = row(&dom, &format!("<tr data-topic=\"{topic}\" data-partition=\"0\""));
    assert!(partition.contains("data-field=\"log-start\">0</td>"), "{partition}");
    assert!(partition.contains("data-field=\"log-end\">3</td>"), "{partition}");
    assert!(partition.contains("data-field=\"remote-end\">3</td>"), "{partition}");
    assert!(partition.contains("data-field=\"remote-segments\">1</td>"), "{partition}");
    assert!(partition.contains("data-field=\"table-end\">3</td>"), "{partition}");
    let head = row(&dom, &format!("<tr class=\"topic\" data-topic=\"{topic}\""));
    assert!(head.contains("data-field=\"table-lag\">0 s</td>"), "{head}");
    let empty = row(&dom, &format!("<tr data-topic=\"{topic}\" data-partition=\"1\""));
    assert!(empty.contains("data-field=\"log-end\">0</td>"), "{empty}");
    let group = row(&dom, "<tr class=\"topic\" data-group=\"console-readers\"");
    assert!(group.contains("data-field=\"total-lag\">2</td>"), "{group}");
    assert!(group.contains(">Empty</td>"), "{group}");
    let lag = row(&dom, &format!("<tr data-group=\"console-readers\" data-topic=\"{topic}\" data-partition=\"0\""));
    assert!(lag.contains("data-field=\"committed\">1</td>"), "{lag}");
    assert!(lag.contains("data-field=\"lag\">2</td>"), "{lag}");
    let txn = row(&dom, "<tr data-transaction=\"console-txn\"");
    assert!(txn.contains("data-field=\"state\">Ongoing</td>"), "{txn}");
    assert!(txn.contains(&format!("data-field=\"partitions\">{txn_topic}/1</td>")), "{txn}");
    let cluster_id = get(&broker.http, "/admin/topics").json()["cluster_id"].as_str().expect("id").to_string();
    assert!(dom.contains(&format!("<span id=\"cluster-id\">{cluster_id}</span>")), "{dom}");
}
