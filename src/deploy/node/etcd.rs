//! The etcd member's shell: membership through etcd's v3 JSON gateway (`/v3/cluster/
//! member/{list,add,remove}`, `/health`; https://etcd.io/docs/v3.5/dev-guide/api_grpc_gateway/),
//! with the etcd client certificate. `node::etcd` decides; this observes and acts.
//! Integration tests run it against a real etcd cluster on loopback.

use crate::node::etcd::{self, Me, Member, Observed, Start};
use anyhow::{Result, anyhow, bail};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// The other members of the cluster, by their client URLs.
pub struct Cluster {
    pub http: reqwest::Client,
    pub endpoints: Vec<String>,
}

fn b64(s: &str) -> String {
    b64_bytes(s.as_bytes())
}

fn b64_bytes(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}

fn unb64(s: &str) -> Option<String> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .ok()
        .map(|v| String::from_utf8_lossy(&v).into_owned())
}

/// The gateway prints uint64 fields as strings ("ID": "1234").
fn u64_of(v: &Value) -> Option<u64> {
    v.as_u64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

pub fn parse_members(v: &Value) -> Vec<Member> {
    v.get("members")
        .and_then(|m| m.as_array())
        .map(|ms| {
            ms.iter()
                .filter_map(|m| {
                    Some(Member {
                        id: u64_of(m.get("ID")?)?,
                        name: m
                            .get("name")
                            .and_then(|n| n.as_str())
                            .unwrap_or_default()
                            .to_string(),
                        peer_urls: strings(&m["peerURLs"]),
                        client_urls: strings(&m["clientURLs"]),
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

/// How long a KV request is retried (`Cluster::kv`).
pub const KV_RETRY: Duration = Duration::from_secs(180);

impl Cluster {
    /// A POST to the first member that answers.
    async fn post(&self, path: &str, body: Value) -> Result<Value> {
        let mut last = String::from("no other member is configured");
        for ep in &self.endpoints {
            match self
                .http
                .post(format!("{ep}{path}"))
                .json(&body)
                .send()
                .await
            {
                Ok(r) if r.status().is_success() => {
                    return r.json().await.map_err(|e| anyhow!("etcd {ep}{path}: {e}"));
                }
                Ok(r) => {
                    let status = r.status();
                    last = format!(
                        "{ep}{path}: HTTP {status}: {}",
                        r.text().await.unwrap_or_default()
                    );
                }
                Err(e) => last = format!("{ep}{path}: {e}"),
            }
        }
        bail!("no etcd member answered: {last}")
    }

    /// A KV request, retried for up to `KV_RETRY`: a cluster that grows from one member
    /// to two accepts no writes until the second starts ("If adding a new member to a
    /// 1-node cluster, the cluster cannot make progress before the new member starts",
    /// https://etcd.io/docs/v3.5/op-guide/runtime-configuration/), and controllers now
    /// boot while the members join. Every KV call here is safe to repeat: a put writes the
    /// same value, and a create-if-absent or compare-and-swap that did succeed is seen
    /// as this node's own value by `plan::decide`.
    async fn kv(&self, path: &str, body: Value) -> Result<Value> {
        let deadline = Instant::now() + KV_RETRY;
        loop {
            match self.post(path, body.clone()).await {
                Ok(v) => return Ok(v),
                Err(e) if Instant::now() < deadline => {
                    eprintln!("{e:#} (retrying in 3 s)");
                    tokio::time::sleep(Duration::from_secs(3)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// A KV transaction (`/v3/kv/txn`).
    pub async fn txn(&self, body: Value) -> Result<Value> {
        self.kv("/v3/kv/txn", body).await
    }

    /// Create-if-absent: (created, the value now).
    pub async fn lock(&self, key: &str, value: &str) -> Result<(bool, Option<String>)> {
        let k = b64(key);
        let a = self
            .txn(json!({
                "compare": [{"key": k, "target": "CREATE", "create_revision": "0"}],
                "success": [{"request_put": {"key": k, "value": b64(value)}}],
                "failure": [{"request_range": {"key": k}}]
            }))
            .await?;
        if a["succeeded"].as_bool() == Some(true) {
            return Ok((true, Some(value.to_string())));
        }
        Ok((
            false,
            a.pointer("/responses/0/response_range/kvs/0/value")
                .and_then(|v| v.as_str())
                .and_then(unb64),
        ))
    }

    /// Compare-and-swap: `key` becomes `to` only if it still holds `from`.
    pub async fn swap(&self, key: &str, from: &str, to: &str) -> Result<bool> {
        let k = b64(key);
        let a = self
            .txn(json!({
                "compare": [{"key": k, "target": "VALUE", "result": "EQUAL", "value": b64(from)}],
                "success": [{"request_put": {"key": k, "value": b64(to)}}],
                "failure": []
            }))
            .await?;
        Ok(a["succeeded"].as_bool() == Some(true))
    }

    pub async fn put(&self, key: &str, value: &str) -> Result<()> {
        self.kv("/v3/kv/put", json!({"key": b64(key), "value": b64(value)}))
            .await
            .map(|_| ())
    }

    /// The keys under a prefix.
    pub async fn keys(&self, prefix: &str) -> Result<Vec<String>> {
        let mut end = prefix.as_bytes().to_vec();
        if let Some(last) = end.last_mut() {
            *last += 1;
        }
        let v = self
            .post(
                "/v3/kv/range",
                json!({"key": b64(prefix), "range_end": b64_bytes(&end), "keys_only": true}),
            )
            .await?;
        Ok(v["kvs"]
            .as_array()
            .map(|kvs| {
                kvs.iter()
                    .filter_map(|kv| kv["key"].as_str().and_then(unb64))
                    .collect()
            })
            .unwrap_or_default())
    }

    pub async fn members(&self) -> Result<Vec<Member>> {
        Ok(parse_members(
            &self.post("/v3/cluster/member/list", json!({})).await?,
        ))
    }

    /// `member add` (not started yet): the members afterwards.
    pub async fn add(&self, peer_url: &str) -> Result<Vec<Member>> {
        let v = self
            .post("/v3/cluster/member/add", json!({"peerURLs": [peer_url]}))
            .await?;
        Ok(parse_members(&v))
    }

    pub async fn remove(&self, id: u64) -> Result<()> {
        // uint64 as a string, as the gateway prints it.
        self.post("/v3/cluster/member/remove", json!({"ID": id.to_string()}))
            .await
            .map(|_| ())
    }

    /// The member list, from the first member that answers within `grace`; None if none
    /// did.
    pub async fn observe(&self, grace: Duration) -> Option<Vec<Member>> {
        let until = Instant::now() + grace;
        loop {
            if let Ok(m) = self.members().await {
                return Some(m);
            }
            if Instant::now() >= until {
                return None;
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }
}

/// Whether a member answers `/health` with `"health":"true"` (what `etcdctl endpoint
/// health` checks: a quorum read served).
pub async fn healthy(http: &reqwest::Client, client_url: &str) -> bool {
    match http.get(format!("{client_url}/health")).send().await {
        Ok(r) => r
            .text()
            .await
            .is_ok_and(|t| t.contains("\"health\":\"true\"")),
        Err(_) => false,
    }
}

/// Waits until every member of the cluster (as `via` lists it) is healthy, so that the
/// next member rolls only onto a whole cluster. Returns the member count.
pub async fn wait_all_healthy(via: &Cluster, deadline: Instant) -> Result<usize> {
    let mut last;
    loop {
        match via.members().await {
            Ok(members) => {
                let mut sick = Vec::new();
                for m in &members {
                    let ok = match m.client_urls.first() {
                        Some(u) => healthy(&via.http, u).await,
                        None => false, // added, not started
                    };
                    if !ok {
                        sick.push(if m.name.is_empty() {
                            format!("{:x} (not started)", m.id)
                        } else {
                            m.name.clone()
                        });
                    }
                }
                if sick.is_empty() {
                    return Ok(members.len());
                }
                last = format!("not healthy: {}", sick.join(", "));
            }
            Err(e) => last = format!("{e:#}"),
        }
        if Instant::now() > deadline {
            bail!("the etcd cluster was not healthy in time: {last}");
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Decides how this member starts and makes the membership change it needs. Returns
/// the start with `--initial-cluster` and `--initial-cluster-state`.
pub async fn prepare(
    peers: &Cluster,
    me: &Me,
    has_data: bool,
    latest_snapshot: Option<String>,
    grace: Duration,
    deadline: Instant,
) -> Result<(Start, String, &'static str)> {
    let mut removed = None;
    loop {
        let members = if has_data {
            None
        } else {
            peers.observe(grace).await
        };
        let obs = Observed {
            has_data,
            members: members.clone(),
            latest_snapshot: latest_snapshot.clone(),
        };
        let start = etcd::decide(me, &obs);
        println!("==> etcd: {}", describe(&start));
        let mut members = members.unwrap_or_default();
        match &start {
            Start::Wait { reason } => {
                if Instant::now() > deadline {
                    bail!("{reason}: gave up waiting");
                }
                tokio::time::sleep(Duration::from_secs(5)).await;
                continue;
            }
            Start::Join { remove, add } => {
                // etcd refuses a reconfiguration while it judges the cluster unhealthy
                // (for example just after a member joined; --strict-reconfig-check, on
                // by default: https://etcd.io/docs/v3.5/op-guide/configuration/). On any
                // error, look again and decide again: an add or remove that did happen
                // shows in the next member list.
                match change(peers, me, *remove, *add, &mut removed).await {
                    Ok(m) => members = m,
                    Err(e) if Instant::now() < deadline => {
                        println!("==> etcd: {e:#}; retrying");
                        tokio::time::sleep(Duration::from_secs(2)).await;
                        continue;
                    }
                    Err(e) => return Err(e),
                }
            }
            _ => {}
        }
        let (cluster, state) = etcd::initial_cluster(me, &start, &members);
        // What was done, over every attempt: a removal in an attempt whose add failed
        // still happened.
        let start = match start {
            Start::Join { remove, .. } => Start::Join {
                remove: remove.or(removed),
                add: true,
            },
            s => s,
        };
        return Ok((start, cluster, state));
    }
}

async fn change(
    peers: &Cluster,
    me: &Me,
    remove: Option<u64>,
    add: bool,
    removed: &mut Option<u64>,
) -> Result<Vec<Member>> {
    if let Some(id) = remove {
        peers.remove(id).await?;
        *removed = Some(id);
        println!("==> etcd: removed the stale member {id:x}");
    }
    if add {
        let members = peers.add(&me.peer_url).await?;
        println!("==> etcd: added {} as {}", me.name, me.peer_url);
        Ok(members)
    } else {
        peers.members().await
    }
}

pub fn describe(s: &Start) -> String {
    match s {
        Start::Resume => "data on the volume: resuming".into(),
        Start::Found => "no cluster and no snapshot: founding a cluster of one".into(),
        Start::Join {
            remove: Some(_), ..
        } => "empty data in a running cluster: replacing this member's entry".into(),
        Start::Join { .. } => "joining the running cluster".into(),
        Start::Restore { snapshot } => {
            format!("every member lost its data: restoring {snapshot}")
        }
        Start::Wait { reason } => format!("waiting: {reason}"),
    }
}
