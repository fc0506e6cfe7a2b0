//! `docker-compose.yml` cannot be run on machines without a Docker engine, so this checks
//! what can be checked without one: it parses, its services reference each other and the
//! repository's own Dockerfile, every agent setting it passes is one the agent knows and
//! accepts, the bucket the agents use is the one created, and no host port is taken twice.
//! The same topology (PostgreSQL, an S3 server, three agent processes) runs for real in
//! `tests/cluster.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use clap::CommandFactory;
use serde_yaml::Value;
use streamhouse_agent::AgentConfig;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn compose() -> Value {
    let text = std::fs::read_to_string(root().join("docker-compose.yml")).unwrap();
    let mut v: Value = serde_yaml::from_str(&text).expect("docker-compose.yml is YAML");
    v.apply_merge().expect("merge keys resolve");
    v
}

fn str_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => panic!("expected a scalar, got {other:?}"),
    }
}

/// A service's environment as a map, whichever form it is written in.
fn environment(service: &Value) -> BTreeMap<String, String> {
    match service.get("environment") {
        None => BTreeMap::new(),
        Some(Value::Mapping(m)) => m.iter().map(|(k, v)| (str_of(k), str_of(v))).collect(),
        Some(Value::Sequence(s)) => s
            .iter()
            .map(|e| {
                let e = str_of(e);
                let (k, v) = e.split_once('=').unwrap_or((&e, ""));
                (k.to_string(), v.to_string())
            })
            .collect(),
        Some(other) => panic!("environment is {other:?}"),
    }
}

fn host_of(url: &str) -> String {
    let rest = url.split("://").nth(1).unwrap();
    let authority = rest.split(['/', '?']).next().unwrap();
    let host_port = authority.rsplit('@').next().unwrap();
    host_port.split(':').next().unwrap().to_string()
}

#[test]
fn compose_file_describes_a_runnable_cluster() {
    let doc = compose();
    let services = doc
        .get("services")
        .and_then(Value::as_mapping)
        .expect("services");
    let names: BTreeSet<String> = services.keys().map(str_of).collect();
    for want in [
        "postgres",
        "minio",
        "minio-setup",
        "agent-1",
        "agent-2",
        "agent-3",
    ] {
        assert!(names.contains(want), "no service {want}");
    }

    // Dependencies name services that exist.
    for (name, svc) in services {
        match svc.get("depends_on") {
            None => {}
            Some(Value::Sequence(s)) => {
                for d in s {
                    assert!(names.contains(&str_of(d)), "{name:?} depends on {d:?}");
                }
            }
            Some(Value::Mapping(m)) => {
                for d in m.keys() {
                    assert!(names.contains(&str_of(d)), "{name:?} depends on {d:?}");
                }
            }
            Some(other) => panic!("depends_on is {other:?}"),
        }
    }

    // Host ports are not taken twice.
    let mut host_ports = BTreeSet::new();
    for svc in services.values() {
        for p in svc
            .get("ports")
            .and_then(Value::as_sequence)
            .into_iter()
            .flatten()
        {
            let p = str_of(p);
            // Published on the loopback interface only: HOST_IP:HOST_PORT:CONTAINER_PORT.
            let parts: Vec<&str> = p.split(':').collect();
            assert_eq!(parts.len(), 3, "{p} does not name a host address");
            assert_eq!(
                parts[0], "127.0.0.1",
                "{p} is published beyond this machine"
            );
            let host = parts[1].to_string();
            assert!(
                host_ports.insert(host.clone()),
                "host port {host} taken twice"
            );
        }
    }

    // The bucket the setup job creates.
    let setup = str_of(
        &services["minio-setup"]["entrypoint"]
            .as_sequence()
            .expect("entrypoint list")
            .last()
            .cloned()
            .unwrap(),
    );
    let bucket = setup
        .split("local/")
        .nth(1)
        .expect("mc mb local/BUCKET")
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();

    // The agents' settings: known to the agent, accepted by it, and pointing at the services.
    let flags: BTreeMap<String, String> = AgentConfig::command()
        .get_arguments()
        .filter_map(|a| {
            let env = a.get_env()?.to_string_lossy().into_owned();
            Some((env, format!("--{}", a.get_long()?)))
        })
        .collect();
    let dockerfile = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    let mut advertised = BTreeSet::new();
    for id in ["agent-1", "agent-2", "agent-3"] {
        let svc = &services[id];
        let build = &svc["build"];
        let context = root().join(str_of(&build["context"]));
        let file = context.join(str_of(&build["dockerfile"]));
        assert!(
            file.exists(),
            "{id} builds from {}, which is missing",
            file.display()
        );
        let env = environment(svc);
        let mut args = vec!["streamhouse-agent".to_string()];
        for (k, v) in &env {
            if k.starts_with("STREAMHOUSE_") {
                let flag = flags
                    .get(k)
                    .unwrap_or_else(|| panic!("{id}: the agent has no setting {k}"));
                args.push(flag.clone());
                args.push(v.clone());
            }
        }
        let config = <AgentConfig as clap::Parser>::try_parse_from(&args)
            .unwrap_or_else(|e| panic!("{id}: the agent refuses {args:?}: {e}"));
        config.validate().unwrap_or_else(|e| panic!("{id}: {e}"));
        assert_eq!(config.id.as_deref(), Some(id));
        assert!(
            names.contains(&host_of(&config.metadata)),
            "{id}: metadata host"
        );
        assert!(config.metadata.starts_with("postgres://"));
        let storage = &config.storage;
        assert!(
            storage.starts_with(&format!("s3://{bucket}/")),
            "{id} uses {storage}, the setup creates bucket {bucket}"
        );
        let endpoint = storage.split("endpoint=").nth(1).expect("an S3 endpoint");
        assert!(names.contains(&host_of(endpoint)), "{id}: S3 endpoint host");
        assert!(env.contains_key("AWS_ACCESS_KEY_ID") && env.contains_key("AWS_SECRET_ACCESS_KEY"));
        // Both ports the agent listens on are published, and the Dockerfile exposes them.
        let ports: Vec<String> = svc["ports"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|p| str_of(p).rsplit(':').next().unwrap().to_string())
            .collect();
        for listen in [Some(&config.listen), config.metrics_listen.as_ref()] {
            let port = listen.unwrap().rsplit(':').next().unwrap().to_string();
            assert!(
                ports.contains(&port),
                "{id} listens on {port} but publishes {ports:?}"
            );
            assert!(
                dockerfile
                    .lines()
                    .any(|l| l.starts_with("EXPOSE") && l.contains(&port)),
                "the Dockerfile does not expose {port}"
            );
        }
        assert!(
            advertised.insert(config.advertise.clone().unwrap()),
            "{id}: advertise"
        );
    }

    // The Dockerfile builds packages and binaries this workspace has.
    let workspace = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    let build_line = dockerfile
        .lines()
        .find(|l| l.contains("cargo build"))
        .expect("the Dockerfile runs cargo build");
    for pkg in build_line
        .split_whitespace()
        .collect::<Vec<_>>()
        .windows(2)
        .filter(|w| w[0] == "-p")
        .map(|w| w[1])
    {
        let dir = pkg.trim_start_matches("streamhouse-");
        assert!(
            workspace.contains(&format!("\"{dir}\"")),
            "no workspace member for {pkg}"
        );
        let manifest = std::fs::read_to_string(root().join(dir).join("Cargo.toml")).unwrap();
        assert!(
            manifest.contains(&format!("name = \"{pkg}\"")),
            "{dir} is not {pkg}"
        );
        assert!(
            dockerfile.contains(&format!("target/release/{pkg}")),
            "the image does not ship {pkg}"
        );
    }
}
