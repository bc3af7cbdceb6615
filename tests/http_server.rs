//! The log server's HTTP contract, against a real server on a local port:
//! the section JSON in the Python library's format, cache headers and
//! entity tags, errors, bearer tokens, partitions and the long poll.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use eventsourcing::http::LogServer;
use eventsourcing::{AppName, Recorder, Store, StoredEvent, Timestamp};
use eventsourcing_tests::{TempSqlite, fresh_postgres_url, on_every_backend, unique_app};
use serde_json::Value;
use uuid::Uuid;

/// A server on a free local port, and a client for it.
struct Http {
    base: String,
    client: reqwest::Client,
}

impl Http {
    async fn start(server: LogServer) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(server.serve(listener));
        Self {
            base,
            client: reqwest::Client::new(),
        }
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        self.get_with(path, &[]).await
    }

    async fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
        let mut request = self.client.get(format!("{}{path}", self.base));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send().await.unwrap()
    }

    /// The status and JSON body of `GET path`.
    async fn json(&self, path: &str) -> (u16, Value) {
        read_json(self.get(path).await).await
    }
}

async fn read_json(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let content_type = header(&response, "content-type");
    let text = response.text().await.unwrap();
    assert_eq!(content_type, "application/json", "status {status}: {text}");
    (
        status,
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}")),
    )
}

fn header(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .map(|value| value.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

/// The state of version `v`: bytes that are not UTF-8, whose base64 is
/// `/wA` followed by the `v`th base64 digit.
fn state(v: u64) -> Vec<u8> {
    vec![0xff, 0x00, u8::try_from(v).unwrap()]
}

fn base64_of_state(v: u64) -> String {
    const DIGITS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    format!("/wA{}", DIGITS[usize::try_from(v).unwrap()] as char)
}

/// Records versions `versions` of aggregate `id` in `partition`, one
/// transaction each.
async fn record(recorder: &impl Recorder, partition: u32, id: Uuid, versions: std::ops::RangeInclusive<u64>) {
    for version in versions {
        let event = StoredEvent {
            originator_id: id,
            originator_version: version,
            timestamp: Timestamp::now(),
            topic: "Dog.TrickAdded".into(),
            state_version: 1,
            state: state(version),
        };
        recorder.insert(partition, vec![event], None).await.unwrap();
    }
}

/// A log of `count` notifications of one aggregate, served in sections of 3.
async fn served_log(store: &Store, count: u64) -> (AppName, eventsourcing::AnyRecorder, Uuid, Http) {
    let app = unique_app("http");
    let recorder = store.recorder(&app).await.unwrap();
    let id = Uuid::new_v4();
    record(&recorder, 0, id, 1..=count).await;
    let server = LogServer::open(store, [app.clone()])
        .await
        .unwrap()
        .with_section_size(3)
        .unwrap();
    (app, recorder, id, Http::start(server).await)
}

fn keys(value: &Value) -> BTreeSet<&str> {
    value.as_object().unwrap().keys().map(String::as_str).collect()
}

fn item_ids(section: &Value) -> Vec<u64> {
    section["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["id"].as_u64().unwrap())
        .collect()
}

async fn sections_are_in_the_python_format_and_linked(store: &Store) {
    let (app, _, id, http) = served_log(store, 7).await;

    let (status, first) = http.json(&format!("/{app}/sections/1,3")).await;
    assert_eq!(status, 200);
    assert_eq!(keys(&first), BTreeSet::from(["id", "next_id", "items"]));
    assert_eq!(
        (first["id"].as_str(), first["next_id"].as_str()),
        (Some("1,3"), Some("4,6"))
    );
    let item = &first["items"][1];
    assert_eq!(
        keys(item),
        BTreeSet::from([
            "id",
            "originator_id",
            "originator_version",
            "topic",
            "state",
            "partition",
            "state_version",
            "timestamp"
        ])
    );
    let originator_id = item["originator_id"].as_str().unwrap();
    assert_eq!(originator_id, id.simple().to_string());
    assert!(originator_id.len() == 32 && originator_id.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(
        (item["id"].as_u64(), item["originator_version"].as_u64()),
        (Some(2), Some(2))
    );
    assert_eq!(item["topic"], "Dog.TrickAdded");
    assert_eq!(item["state"], base64_of_state(2));
    assert_eq!(
        (item["partition"].as_u64(), item["state_version"].as_u64()),
        (Some(0), Some(1))
    );
    assert!(
        item["timestamp"].as_i64().unwrap() > 1_600_000_000_000_000,
        "microseconds since 1970"
    );

    let (_, second) = http.json(&format!("/{app}/sections/4,6")).await;
    assert_eq!(keys(&second), BTreeSet::from(["id", "next_id", "previous_id", "items"]));
    assert_eq!(
        (second["previous_id"].as_str(), second["next_id"].as_str()),
        (Some("1,3"), Some("7,9"))
    );
    // A request is answered with the aligned section holding its first id.
    assert_eq!(http.json(&format!("/{app}/sections/5,6")).await.1, second);

    // Following next_id from the first section reaches every notification
    // once, in order, and ends at the current section.
    let (mut ids, mut next) = (Vec::new(), Some("1,3".to_owned()));
    let mut last = Value::Null;
    while let Some(section_id) = next {
        let (status, section) = http.json(&format!("/{app}/sections/{section_id}")).await;
        assert_eq!(status, 200);
        ids.extend(item_ids(&section));
        next = section["next_id"].as_str().map(str::to_owned);
        last = section;
    }
    assert_eq!(ids, (1..=7).collect::<Vec<_>>());
    assert_eq!(last["id"], "7,9");
    assert_eq!(http.json(&format!("/{app}/sections/current")).await.1, last);

    // A section past the end is exactly the Python library's empty one.
    let response = http.get(&format!("/{app}/sections/10,12")).await;
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(
        response.text().await.unwrap(),
        r#"{"id":null,"next_id":null,"items":[]}"#
    );
}

async fn full_sections_are_immutable_and_the_current_one_revalidates(store: &Store) {
    let (app, recorder, id, http) = served_log(store, 7).await;

    let full = http.get(&format!("/{app}/sections/1,3")).await;
    assert_eq!(full.status().as_u16(), 200);
    assert_eq!(header(&full, "cache-control"), "public, max-age=31536000, immutable");
    assert_eq!(header(&full, "content-type"), "application/json");
    let full_tag = header(&full, "etag");
    assert!(
        full_tag.len() > 2 && full_tag.starts_with('"') && full_tag.ends_with('"'),
        "{full_tag}"
    );
    let unchanged = http
        .get_with(&format!("/{app}/sections/1,3"), &[("if-none-match", &full_tag)])
        .await;
    assert_eq!(unchanged.status().as_u16(), 304);
    assert_eq!(header(&unchanged, "etag"), full_tag);
    assert!(unchanged.text().await.unwrap().is_empty());

    let current = http.get(&format!("/{app}/sections/current")).await;
    assert_eq!(current.status().as_u16(), 200);
    assert_eq!(header(&current, "cache-control"), "no-cache");
    let current_tag = header(&current, "etag");
    assert!(current_tag.starts_with('"') && current_tag != full_tag, "{current_tag}");
    let path = format!("/{app}/sections/current");
    let unchanged = http.get_with(&path, &[("if-none-match", &current_tag)]).await;
    assert_eq!(unchanged.status().as_u16(), 304);
    assert!(unchanged.text().await.unwrap().is_empty());
    let other = http.get_with(&path, &[("if-none-match", "\"something else\"")]).await;
    assert_eq!(other.status().as_u16(), 200);

    // A notification lands: the current section is new, with a new tag.
    record(&recorder, 0, id, 8..=9).await;
    let grown = http.get_with(&path, &[("if-none-match", &current_tag)]).await;
    assert_eq!(grown.status().as_u16(), 200);
    let grown_tag = header(&grown, "etag");
    assert_ne!(grown_tag, current_tag);
    let (_, body) = read_json(grown).await;
    assert_eq!(item_ids(&body), [7, 8, 9]);

    // Full but with nothing after it, it may still gain a next link.
    let last = http.get(&format!("/{app}/sections/7,9")).await;
    assert_eq!(header(&last, "cache-control"), "no-cache");
    record(&recorder, 0, id, 10..=10).await;
    let sealed = http.get(&format!("/{app}/sections/7,9")).await;
    assert_eq!(header(&sealed, "cache-control"), "public, max-age=31536000, immutable");
    assert_eq!(read_json(sealed).await.1["next_id"], "10,12");

    // Past the end: nothing yet, so not cacheable for long.
    let empty = http.get(&format!("/{app}/sections/100,102")).await;
    assert_eq!(header(&empty, "cache-control"), "no-cache");
    assert!(!header(&empty, "etag").is_empty());
}

/// Asserts that `GET path` is `status` with a JSON error naming all of `words`.
async fn assert_error(http: &Http, path: &str, status: u16, words: &[&str]) {
    let (got, body) = http.json(path).await;
    assert_eq!(got, status, "{path}: {body}");
    assert_eq!(keys(&body), BTreeSet::from(["error"]), "{path}: {body}");
    let message = body["error"].as_str().unwrap();
    for word in words {
        assert!(message.contains(word), "{path}: `{message}` does not name `{word}`");
    }
}

async fn refuses_malformed_requests_with_json_errors(store: &Store) {
    let (app, _, _, http) = served_log(store, 4).await;
    let server = LogServer::open(store, [app.clone()]).await.unwrap();
    for size in [0, 10_001] {
        let error = server.clone().with_section_size(size).unwrap_err();
        assert!(error.to_string().contains(&format!("section size {size}")), "{error}");
    }
    assert!(server.with_section_size(10_000).is_ok());
    for (id, says) in [
        ("x", "first,last"),
        ("0,10", "start at 1"),
        ("10,1", "before the first"),
        ("1,100000000", "at most 3"),
        ("1,x", "`x` is not a whole number"),
    ] {
        assert_error(&http, &format!("/{app}/sections/{id}"), 400, &[id, says]).await;
    }
    let notifications = format!("/{app}/notifications");
    assert_error(
        &http,
        &format!("{notifications}?limit=4"),
        400,
        &["limit=4", "section size 3"],
    )
    .await;
    assert_error(&http, &format!("{notifications}?after=x"), 400, &["after"]).await;
    assert_error(&http, &format!("{notifications}?after=-1"), 400, &["after"]).await;
    assert_error(&http, &format!("{notifications}?wait=soon"), 400, &["wait"]).await;
    assert_error(
        &http,
        &format!("{notifications}?after=9223372036854775808"),
        400,
        &["after"],
    )
    .await;

    // A partition the log lacks is not found, in every route; a partition
    // that is not a number is malformed.
    assert_error(
        &http,
        &format!("/{app}/partitions/1/sections/current"),
        404,
        &["partition 1", app.as_str()],
    )
    .await;
    assert_error(&http, &format!("{notifications}?partition=1"), 404, &["partition 1"]).await;
    assert_error(
        &http,
        &format!("/{app}/partitions/one/sections/current"),
        400,
        &["`one`"],
    )
    .await;

    assert_error(&http, "/no_such_app", 404, &["no_such_app"]).await;
    assert_error(&http, "/no_such_app/sections/1,3", 404, &["no_such_app"]).await;
    assert_error(&http, "/no_such_app/notifications", 404, &["no_such_app"]).await;
    assert_error(&http, &format!("/{app}/sections"), 404, &["no route", "sections"]).await;
    assert_error(&http, "/a/b/c/d/e/f", 404, &["no route"]).await;

    let posted = http
        .client
        .post(format!("{}/{app}/sections/1,3", http.base))
        .send()
        .await
        .unwrap();
    let (status, body) = read_json(posted).await;
    assert_eq!(status, 405);
    assert!(body["error"].as_str().unwrap().contains("GET"), "{body}");

    // The good requests next to them are answered.
    assert_eq!(http.json(&format!("/{app}/sections/1,3")).await.0, 200);
    assert_eq!(http.json(&format!("{notifications}?limit=3&after=0")).await.0, 200);
}

async fn bearer_tokens_hide_what_a_client_may_not_read(store: &Store) {
    let (dogs, cats) = (unique_app("dogs"), unique_app("cats"));
    for app in [&dogs, &cats] {
        record(&store.recorder(app).await.unwrap(), 0, Uuid::new_v4(), 1..=2).await;
    }
    let open = || async { LogServer::open(store, [dogs.clone(), cats.clone()]).await.unwrap() };
    assert!(open().await.with_bearer_token("", [dogs.clone()]).is_err());
    assert!(open().await.with_bearer_token("two words", [dogs.clone()]).is_err());
    let unknown = unique_app("birds");
    let error = open().await.with_bearer_token("t", [unknown.clone()]).unwrap_err();
    assert!(error.to_string().contains(unknown.as_str()), "{error}");

    let server = open()
        .await
        .with_bearer_token("dog-walker", [dogs.clone()])
        .unwrap()
        .with_bearer_token("vet", [dogs.clone(), cats.clone()])
        .unwrap();
    let http = Http::start(server).await;
    let dogs_section = format!("/{dogs}/sections/current");

    for authorization in [None, Some("Bearer nobody"), Some("Basic dog-walker"), Some("Bearer ")] {
        let headers: Vec<(&str, &str)> = authorization.map(|a| ("authorization", a)).into_iter().collect();
        for path in [
            "/",
            dogs_section.as_str(),
            &format!("/{dogs}"),
            "/no_such_app",
            "/x/y/z/w",
        ] {
            let response = http.get_with(path, &headers).await;
            assert!(
                header(&response, "www-authenticate").starts_with("Bearer"),
                "{path} {authorization:?}"
            );
            let (status, body) = read_json(response).await;
            assert_eq!(status, 401, "{path} {authorization:?}: {body}");
            assert!(body["error"].as_str().unwrap().contains("token"), "{body}");
        }
    }

    let walker = [("authorization", "Bearer dog-walker")];
    let (status, body) = read_json(http.get_with(&dogs_section, &walker).await).await;
    assert_eq!((status, item_ids(&body)), (200, vec![1, 2]));
    let (status, apps) = read_json(http.get_with("/", &walker).await).await;
    assert_eq!((status, apps), (200, serde_json::json!({ "apps": [dogs.as_str()] })));

    // Cats are served, but to this token they do not exist.
    for route in ["", "/sections/current", "/notifications"] {
        let hidden = http.get_with(&format!("/{cats}{route}"), &walker).await;
        let absent = http.get_with(&format!("/{unknown}{route}"), &walker).await;
        let (hidden, absent) = (read_json(hidden).await, read_json(absent).await);
        assert_eq!(hidden.0, 404);
        let hidden_as_absent = hidden.1.to_string().replace(cats.as_str(), unknown.as_str());
        assert_eq!(hidden_as_absent, absent.1.to_string());
    }

    let vet = [("authorization", "bearer vet")];
    let (status, body) = read_json(http.get_with(&format!("/{cats}/sections/1,3"), &vet).await).await;
    assert_eq!((status, item_ids(&body)), (200, vec![1, 2]));
    let (_, apps) = read_json(http.get_with("/", &vet).await).await;
    let mut both = vec![cats.as_str(), dogs.as_str()];
    both.sort_unstable();
    assert_eq!(apps, serde_json::json!({ "apps": both }));
}

async fn serves_each_partition(store: &Store) {
    let app = unique_app("parts");
    let recorder = store.partitioned_recorder(&app, 4).await.unwrap();
    for partition in 0..4 {
        record(&recorder, partition, Uuid::new_v4(), 1..=u64::from(partition) + 1).await;
    }
    let server = LogServer::open(store, [app.clone()])
        .await
        .unwrap()
        .with_section_size(2)
        .unwrap();
    let http = Http::start(server).await;

    let (status, info) = http.json(&format!("/{app}")).await;
    assert_eq!(status, 200);
    assert_eq!(
        info,
        serde_json::json!({ "app": app.as_str(), "partitions": 4, "section_size": 2, "heads": [1, 2, 3, 4] })
    );
    for partition in 0..4u64 {
        let (status, current) = http
            .json(&format!("/{app}/partitions/{partition}/sections/current"))
            .await;
        assert_eq!(status, 200);
        let count = partition + 1;
        assert_eq!(current["id"], if count > 2 { "3,4" } else { "1,2" });
        let items = current["items"].as_array().unwrap();
        assert!(items.iter().all(|item| item["partition"] == partition), "{current}");
        assert_eq!(item_ids(&current).last(), Some(&count));

        let (_, polled) = http
            .json(&format!("/{app}/notifications?partition={partition}&after=0"))
            .await;
        assert_eq!(
            (polled["partition"].as_u64(), polled["head"].as_u64()),
            (Some(partition), Some(count))
        );
        assert_eq!(item_ids(&polled), (1..=count.min(2)).collect::<Vec<_>>());
    }
    // Partition 0 is the default of both routes.
    assert_eq!(
        http.json(&format!("/{app}/sections/1,2")).await.1,
        http.json(&format!("/{app}/partitions/0/sections/1,2")).await.1
    );
    let (status, _) = http.json(&format!("/{app}/partitions/4/sections/current")).await;
    assert_eq!(status, 404);
}

async fn long_polls_wait_for_a_commit(store: &Store) {
    let (app, recorder, id, http) = served_log(store, 2).await;
    let notifications = format!("/{app}/notifications");

    // What is there is answered at once, up to the limit.
    let (status, body) = http.json(&format!("{notifications}?after=0&limit=1&wait=5000")).await;
    assert_eq!(status, 200);
    assert_eq!(keys(&body), BTreeSet::from(["partition", "after", "head", "items"]));
    assert_eq!(
        (body["after"].as_u64(), body["head"].as_u64(), item_ids(&body)),
        (Some(0), Some(2), vec![1])
    );
    assert_eq!(body["items"][0]["state"], base64_of_state(1));
    let response = http.get(&notifications).await;
    assert_eq!(header(&response, "cache-control"), "no-store");
    assert_eq!(item_ids(&read_json(response).await.1), [1, 2]);

    // limit=0: only the head.
    let (_, head_only) = http.json(&format!("{notifications}?limit=0")).await;
    assert_eq!((head_only["head"].as_u64(), item_ids(&head_only)), (Some(2), vec![]));

    // Nothing after 2: the request waits, and is answered with the
    // notification committed meanwhile.
    let started = Instant::now();
    let writer = {
        let recorder = recorder.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            record(&recorder, 0, id, 3..=3).await;
        })
    };
    let (status, body) = http.json(&format!("{notifications}?after=2&wait=5000")).await;
    writer.await.unwrap();
    assert_eq!(
        (status, body["head"].as_u64(), item_ids(&body)),
        (200, Some(3), vec![3])
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "woken by the commit, not the end of the wait"
    );

    // No commit: an answer without items once the wait runs out.
    let started = Instant::now();
    let (status, body) = http.json(&format!("{notifications}?after=3&wait=300")).await;
    assert_eq!((status, body["head"].as_u64(), item_ids(&body)), (200, Some(3), vec![]));
    assert!(started.elapsed() >= Duration::from_millis(290), "it waited");
}

async fn long_polls_wait_no_longer_than_the_cap(store: &Store) {
    let app = unique_app("cap");
    store.recorder(&app).await.unwrap();
    let server = LogServer::open(store, [app.clone()])
        .await
        .unwrap()
        .with_max_wait(Duration::from_millis(200));
    let http = Http::start(server).await;
    let started = Instant::now();
    let (status, body) = http.json(&format!("/{app}/notifications?wait=60000")).await;
    assert_eq!((status, body["head"].as_u64(), item_ids(&body)), (200, Some(0), vec![]));
    assert!(started.elapsed() < Duration::from_secs(10), "capped at 200 ms");
    assert!(started.elapsed() >= Duration::from_millis(190), "but waited");
}

on_every_backend!(
    sections_are_in_the_python_format_and_linked,
    full_sections_are_immutable_and_the_current_one_revalidates,
    refuses_malformed_requests_with_json_errors,
    bearer_tokens_hide_what_a_client_may_not_read,
    serves_each_partition,
    long_polls_wait_for_a_commit,
    long_polls_wait_no_longer_than_the_cap,
);

/// A long poll answered with a commit made through another store on the
/// same database, as another process would: `store` serves, `other` writes.
async fn long_poll_sees_another_stores_commit(store: &Store, other: &Store) {
    let app = unique_app("other");
    store.recorder(&app).await.unwrap();
    let http = Http::start(LogServer::open(store, [app.clone()]).await.unwrap()).await;
    let writer = other.recorder(&app).await.unwrap();
    let started = Instant::now();
    let write = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        record(&writer, 0, Uuid::new_v4(), 1..=1).await;
    });
    let (status, body) = http.json(&format!("/{app}/notifications?wait=5000")).await;
    write.await.unwrap();
    assert_eq!((status, item_ids(&body)), (200, vec![1]));
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "found before the wait ran out"
    );
}

/// SQLite announces no commit across stores: the server looks again while
/// it waits.
#[tokio::test]
async fn a_long_poll_on_sqlite_sees_a_commit_by_another_store() {
    let file = TempSqlite::new();
    long_poll_sees_another_stores_commit(&file.open().await, &file.open().await).await;
}

/// PostgreSQL announces commits across stores with NOTIFY.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_on_postgres_is_woken_by_a_commit_of_another_store() {
    let Some(url) = fresh_postgres_url().await else { return };
    let (store, other) = (Store::open(&url).await.unwrap(), Store::open(&url).await.unwrap());
    long_poll_sees_another_stores_commit(&store, &other).await;
}
