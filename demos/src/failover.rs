//! The failover experiment ([`streamhouse_tui::scenario::failover`], the same one the
//! console's `--demo failover` runs) on a local cluster of agent processes this program
//! starts: what `failover_demo` narrates and `failover_benchmark` repeats.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use streamhouse_agent::local_cluster::LocalCluster;
use streamhouse_client::{Admin, Consumer, Producer};
use streamhouse_tui::scenario::failover::{self, Agents, Clients, Plan};

pub use streamhouse_tui::scenario::failover::{Kill, Outcome};

/// How the cluster runs and what load it is under.
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// Agent processes in the cluster.
    #[arg(long, default_value_t = 3)]
    pub agents: usize,
    #[arg(long, default_value_t = 6)]
    pub partitions: u32,
    /// Records per second the producer sends.
    #[arg(long, default_value_t = 5_000)]
    pub rate: u64,
    /// The agents' lease TTL.
    #[arg(long, default_value_t = 1_000)]
    pub lease_ttl_ms: u64,
    /// The agents' heartbeat (and lease round) period.
    #[arg(long, default_value_t = 250)]
    pub heartbeat_ms: u64,
    /// Steady load before each kill.
    #[arg(long, default_value_t = 3)]
    pub settle_seconds: u64,
    /// Where the agents keep their data and logs (default: a temporary directory).
    #[arg(long)]
    pub data_dir: Option<std::path::PathBuf>,
}

/// The demos' cluster, for the experiment to kill and restart agents of, and the address
/// each killed agent served on: it comes back on the same one, so the addresses the clients
/// were given at the start stay good however many agents have been restarted.
struct Local(Mutex<(LocalCluster, HashMap<String, String>)>);

impl Agents for Local {
    async fn kill(&self, id: &str) -> anyhow::Result<()> {
        let agent = {
            let mut local = self.0.lock().unwrap_or_else(|p| p.into_inner());
            let agent = local.0.take(id)?;
            local.1.insert(id.to_string(), agent.addr.clone());
            agent
        };
        tokio::task::spawn_blocking(move || agent.kill9()).await??;
        Ok(())
    }

    async fn restart(&self, id: &str) -> anyhow::Result<()> {
        let (spec, listen) = {
            let local = self.0.lock().unwrap_or_else(|p| p.into_inner());
            let listen = local.1.get(id).cloned();
            (local.0.spec().clone(), listen)
        };
        let launch = id.to_string();
        let agent = tokio::task::spawn_blocking(move || match listen {
            Some(addr) => spec.launch_on(&launch, &addr),
            None => spec.launch(&launch),
        })
        .await??;
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .0
            .agents
            .insert(id.to_string(), agent);
        Ok(())
    }
}

/// Starts a cluster under `opts.data_dir` (a temporary directory if unset), runs the
/// experiment with `kills` kills on it, telling `say` what happens, and stops the cluster.
pub async fn run(
    opts: &Options,
    kills: usize,
    say: &(dyn Fn(String) + Sync),
) -> anyhow::Result<Outcome> {
    let temp = tempfile::tempdir()?;
    let dir = opts.data_dir.as_deref().unwrap_or(temp.path());
    let flags = vec![
        "--lease-ttl-ms".to_string(),
        opts.lease_ttl_ms.to_string(),
        "--heartbeat-ms".to_string(),
        opts.heartbeat_ms.to_string(),
    ];
    let cluster = LocalCluster::start(dir, opts.agents, &flags)?;
    let bootstrap = cluster.bootstrap();
    say(format!(
        "started {} agents ({bootstrap}), lease TTL {} ms",
        opts.agents, opts.lease_ttl_ms
    ));
    let clients = Clients {
        admin: Admin::connect_with_timeout(&bootstrap, Duration::from_secs(30)).await?,
        producer: Producer::builder().bootstrap(&bootstrap),
        consumer: Consumer::builder().bootstrap(&bootstrap),
    };
    let plan = Plan {
        topic: "failover".into(),
        partitions: opts.partitions,
        rate: opts.rate,
        settle: Duration::from_secs(opts.settle_seconds),
        kills,
        agents: opts.agents,
    };
    let agents = Local(Mutex::new((cluster, HashMap::new())));
    let out = failover::run(&agents, &clients, &plan, say).await;
    let (mut cluster, _) = agents.0.into_inner().unwrap_or_else(|p| p.into_inner());
    tokio::task::spawn_blocking(move || cluster.stop_all()).await??;
    out
}
