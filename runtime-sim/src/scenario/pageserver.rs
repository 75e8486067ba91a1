//! One pageserver life in the simulator (the driver on the world's adapters,
//! its request layer, the operator who restarts a node that refused to start, the
//! clock nemesis) and S-LOCAL-TRUTH's check once a restarted life is active.

use super::*;

/// One life of the pageserver node: run the driver on the world's adapters and
/// serve the request layer. Re-run from the top on every restart, with the same
/// settings.
pub(crate) async fn pageserver_main(world: World, trace: TraceSink, settings: Drawn) {
    let addr: SocketAddr = PAGESERVER_ADDR.parse().expect("static address");
    let (disk, remote, clock) = (world.disk.clone(), world.remote.clone(), world.clock.clone());
    let adapters = (disk, remote, world.store.clone());
    let mut config = node_config();
    settings.apply(&mut config);
    config.rebuild_generations =
        std::mem::take(&mut world.operator.lock().expect("not poisoned").rebuild_next);
    let serving =
        Serving { rewrite: world.rewrite, watch: world.requests.clone(), name: "node-1".into() };
    let stopped =
        run_pageserver(config, addr, adapters, clock, trace, serving, &world.inputs).await;
    // A lost store (`cp.store.lost`): the node refuses to start, naming the flag,
    // or its rebuild stops on a store failure; the operator restarts it with the
    // flag (docs/OPERATIONS.md).
    let reason = &stopped.reason;
    if !stopped.clean
        && (reason.contains("--rebuild-generations") || reason.contains("during Starting(Rebuild)"))
    {
        world.operator.lock().expect("not poisoned").refused = true;
    }
    // The process has exited; the simulated node stays as it is until a kill (the
    // operator's or the nemesis's): a life that returned would leave its endpoint
    // bound and the next life could not bind it.
    std::future::pending::<()>().await;
}

/// How often the operator looks whether the node refused to start.
const OPERATOR_PERIOD: Duration = Duration::from_millis(100);

/// The operator of a node whose control-plane store may be lost (`cp.store.lost`):
/// whenever the node refuses to start because its store does not know its tenants,
/// restart it with `--rebuild-generations` (docs/OPERATIONS.md). Runs only when the
/// site is on, so that other seeds run as before it existed.
pub(crate) async fn operator(
    world: World,
    node: madsim::runtime::NodeHandle,
    restarts: Arc<Mutex<usize>>,
    stop: Arc<Mutex<bool>>,
) {
    let handle = Handle::current();
    while !*stop.lock().expect("not poisoned") {
        madsim::time::sleep(OPERATOR_PERIOD).await;
        let mut op = world.operator.lock().expect("not poisoned");
        if !op.down && std::mem::take(&mut op.refused) {
            op.rebuild_next = true;
            drop(op);
            nemesis_line(
                "node-1",
                format_args!(
                    "operator: the node refused to start; restarted with --rebuild-generations"
                ),
            );
            // The process exited: nothing of the machine's is lost (no crash).
            handle.kill(node.id());
            handle.restart(node.id());
            *restarts.lock().expect("not poisoned") += 1;
        }
    }
}

/// How a pageserver's request layer serves: the requests it changes (a test-only
/// break, [`rpc::UNCHANGED`] in the swarm), and where it enters every request it
/// holds (S-NO-DEADLOCK), under the node's lane name.
#[derive(Clone, Debug)]
pub(crate) struct Serving {
    pub rewrite: rpc::Rewrite,
    pub watch: crate::deadlock::RequestWatch,
    pub name: String,
}

/// Runs a pageserver's driver on simulated adapters (disk, object store, and the
/// control plane's store or link) and serves the request layer on `addr`, until
/// the node stops or is killed. The life's inputs count in `inputs`.
pub(crate) async fn run_pageserver<S: strata_adapters::generation_store::GenerationStore>(
    config: NodeConfig,
    addr: SocketAddr,
    (disk, remote, store): (crate::sim_disk::SimDisk, crate::sim_remote::SimRemote, S),
    clock: clock::SimClock,
    trace: TraceSink,
    serving: Serving,
    inputs: &crate::inputs::InputTally,
) -> driver::Stopped {
    let redo = crate::sim_redo::SimRedo::new(disk.faults().clone());
    let adapters = Adapters { disk, remote, store, redo };
    let (handle, inbox) = driver::channel();
    let status = inputs.new_life();
    let driver =
        tokio::spawn(driver::run_with_clock(config, adapters, clock, inbox, trace, status));
    let Serving { rewrite, watch, name } = serving;
    let _endpoint = rpc::serve_rewriting(addr, handle, rewrite, (watch, &name))
        .await
        .expect("bind the node's endpoint");
    match driver.await {
        Ok(Ok(stopped)) => {
            tracing::info!(?stopped, "node stopped");
            stopped
        }
        Ok(Err(e)) => panic!("node failed: {e}"),
        Err(e) => panic!("driver task failed: {e}"),
    }
}

/// How often the clock nemesis asks each clock site whether it fires.
const CLOCK_NEMESIS_PERIOD: Duration = Duration::from_millis(500);

/// Skews and jumps one pageserver's clock while the clock sites fire (see
/// `crate::clock`). A skew stays after the heal, as a host's does; jumps stop.
/// The one-node scenario runs one; the cluster runs one per pageserver, each
/// clock on its own (the sites' settings are the run's).
pub(crate) async fn clock_nemesis(faults: Faults, clock: clock::SimClock, stop: Arc<Mutex<bool>>) {
    while !*stop.lock().expect("not poisoned") {
        madsim::time::sleep(CLOCK_NEMESIS_PERIOD).await;
        if faults.fire(site::CLOCK_SKEW) {
            let rate = thread_rng().gen_range(clock::SKEW_MIN_PERMILLE..=clock::SKEW_MAX_PERMILLE);
            tracing::info!(rate_permille = rate, "nemesis: the pageserver's clock is skewed");
            clock.set_rate_permille(rate);
        }
        if faults.fire(site::CLOCK_MONOTONIC_JUMP) {
            let ms = thread_rng().gen_range(1_000..=30_000);
            tracing::info!(ms, "nemesis: the pageserver's clocks jump forward");
            clock.jump_monotonic(ms);
        }
        if faults.fire(site::CLOCK_WALL_JUMP) {
            let ms: i64 = thread_rng().gen_range(2_000..=3_600_000);
            let ms = if thread_rng().gen_bool(0.5) { ms } else { -ms };
            tracing::info!(ms, "nemesis: the pageserver's wall clock steps");
            clock.step_wall(ms);
        }
    }
}

/// Whether any clock site is on: the clock nemesis runs only then, so a seed with
/// every clock site off runs exactly as before they existed.
pub(crate) fn clock_sites_on(faults: &Faults) -> bool {
    site::CLOCK.iter().any(|s| faults.probability(s) > 0.0)
}

/// The simulated machines of a one-node run: the pageserver (restarted by a kill
/// with `pageserver_main` again) and the client that drives it.
pub(crate) fn pageserver_and_client(
    handle: &Handle,
    world: &World,
    trace: &TraceSink,
    settings: &Drawn,
) -> (madsim::runtime::NodeHandle, madsim::runtime::NodeHandle) {
    let (w, t, s) = (world.clone(), trace.clone(), settings.clone());
    let node = handle
        .create_node()
        .name("pageserver")
        .ip(PAGESERVER_IP.parse().expect("static address"))
        .init(move || pageserver_main(w.clone(), t.clone(), s.clone()))
        .build();
    let client =
        handle.create_node().name("client").ip(CLIENT_IP.parse().expect("static address")).build();
    (node, client)
}

/// Per tenant, the newest of the generations granted (tenant, generation).
pub(crate) fn newest_grants(
    grants: impl IntoIterator<Item = (TenantId, strata_core::Generation)>,
) -> BTreeMap<TenantId, strata_core::Generation> {
    let mut newest = BTreeMap::new();
    for (tenant, generation) in grants {
        let g = newest.entry(tenant).or_insert(generation);
        *g = (*g).max(generation);
    }
    newest
}

/// How long [`local_truth_once_active`] waits for the node to become active.
const ACTIVE_WITHIN: Duration = Duration::from_secs(30);

/// S-LOCAL-TRUTH (`checkers::local_truth`), checked as soon as the node's life
/// that followed crash number `crashes` (a life after the first `lives_before`
/// lives: a killed life keeps reporting its last phase until the next one
/// starts) reports itself active: its start-up has reconciled every tenant. Skipped when the node crashes again first, or does not
/// become active within [`ACTIVE_WITHIN`] (L-ATTACH and the seed's bound speak for
/// a node that never does).
pub(crate) async fn local_truth_once_active(
    (disk, remote): (&crate::sim_disk::SimDisk, &crate::sim_remote::SimRemote),
    (lives, lives_before): (&crate::inputs::InputTally, usize),
    crashes: u64,
    newest_grants: impl Fn() -> BTreeMap<TenantId, strata_core::Generation>,
) -> Result<(), String> {
    let until = madsim::time::Instant::now() + ACTIVE_WITHIN;
    while madsim::time::Instant::now() < until && disk.crashes() == crashes {
        if lives.lives() > lives_before && lives.newest_phase().starts_with("Active") {
            return checkers::local_truth(disk, remote, &newest_grants());
        }
        madsim::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}
