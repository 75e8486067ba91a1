//! The driver and the clock: a wall clock stepped back beyond the tolerance reaches
//! the node as an input and a metric, through the real driver on real adapters.
#![cfg(not(madsim))]

use camino::Utf8PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use strata_adapters::local_disk::LocalDisk;
use strata_adapters::local_fs::LocalFs;
use strata_adapters::redo::InProcessRedo;
use strata_adapters::sqlite_store::SqliteStore;
use strata_core::NodeId;
use strata_core::node::NodeConfig;
use strata_core::node::api::{Request, Response};
use strata_core::time::{Instant, WALL_CLOCK_JUMP_TOLERANCE_MS, WallTime};
use strata_runtime_tokio::driver::{self, Adapters, Clock, NodeHandle, NodeStatus, SystemClock};
use strata_runtime_tokio::trace_sink::TraceSink;

/// The system clock, with a wall clock an operator can step either way.
#[derive(Clone, Debug)]
struct SteppedClock {
    system: SystemClock,
    wall_offset_ms: Arc<Mutex<i64>>,
}

impl SteppedClock {
    fn step_wall(&self, ms: i64) {
        *self.wall_offset_ms.lock().unwrap() += ms;
    }
}

impl Clock for SteppedClock {
    fn monotonic(&self) -> Instant {
        self.system.monotonic()
    }

    fn wall(&self) -> WallTime {
        let offset = *self.wall_offset_ms.lock().unwrap();
        WallTime(self.system.wall().0.saturating_add_signed(offset))
    }
}

/// Two requests: the status is refreshed after an input's effects are drained, so
/// the second answer comes after the first input's status.
async fn settle(handle: &NodeHandle) {
    list(handle).await;
    list(handle).await;
}

async fn list(handle: &NodeHandle) -> Response {
    for _ in 0..600 {
        if let Ok(r) = handle.call(Request::ListTenants).await {
            return r;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the node never answered ListTenants");
}

fn jumps(status: &Mutex<NodeStatus>, direction: &str) -> u64 {
    status.lock().unwrap().wall_clock_jumps.get(direction).copied().unwrap_or(0)
}

#[tokio::test]
async fn a_wall_clock_stepped_back_is_an_input_and_a_metric() {
    let dir = tempfile::tempdir().unwrap();
    let root = Utf8PathBuf::from_path_buf(dir.path().to_owned()).unwrap();
    for sub in ["data", "remote"] {
        std::fs::create_dir_all(root.join(sub)).unwrap();
    }
    let adapters = Adapters {
        disk: LocalDisk::new(root.join("data")),
        remote: LocalFs::new(root.join("remote")),
        store: SqliteStore::open(&root.join("control.sqlite")).unwrap(),
        redo: InProcessRedo,
    };
    let clock = SteppedClock { system: SystemClock::new(), wall_offset_ms: Default::default() };
    let (handle, inbox) = driver::channel();
    let (trace, lines) = TraceSink::collect();
    let status = Arc::new(Mutex::new(NodeStatus::default()));
    let config = NodeConfig::new(NodeId(1));
    let run = tokio::spawn(driver::run_with_clock(
        config,
        adapters,
        clock.clone(),
        inbox,
        trace,
        status.clone(),
    ));
    list(&handle).await;
    assert_eq!((jumps(&status, "forward"), jumps(&status, "backward")), (0, 0));

    // Within the tolerance: nothing.
    clock.step_wall(-(WALL_CLOCK_JUMP_TOLERANCE_MS as i64) / 2);
    settle(&handle).await;
    assert_eq!(jumps(&status, "backward"), 0);

    // An hour back: the node hears of it once, and the status (the metric) counts it.
    clock.step_wall(-3_600_000);
    settle(&handle).await;
    assert_eq!(jumps(&status, "backward"), 1);
    assert_eq!(jumps(&status, "forward"), 0);
    let traced = lines.lock().unwrap().clone();
    assert_eq!(
        traced.iter().filter(|l| l.contains("wall clock jumped backward by")).count(),
        1,
        "one jump input, traced"
    );

    // And forward again.
    clock.step_wall(3_600_000);
    settle(&handle).await;
    assert_eq!(jumps(&status, "forward"), 1);

    assert!(matches!(handle.call(Request::Shutdown).await, Ok(Response::ShutdownComplete { .. })));
    let stopped = run.await.unwrap().unwrap();
    assert!(stopped.clean, "{stopped:?}");
}
