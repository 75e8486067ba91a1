//! `check_invariants` of the migration reconciler (the rules are listed in the
//! module doc of `migration`).

use super::{
    MAX_ACTIVE_MIGRATIONS, MAX_EVENTS_PER_MIGRATION, MigrationReconciler, Phase, Wait, steps,
};

impl MigrationReconciler {
    /// Panics if a rule is broken. Tests run it after every input.
    pub fn check_invariants(&self) {
        assert!(self.active.len() <= MAX_ACTIVE_MIGRATIONS, "too many migrations");
        for (op, tenant) in &self.ops {
            let wait = self.active.get(tenant).map(|m| &m.wait);
            let matches = match wait {
                Some(Wait::Persist { op: o, .. } | Wait::Call { op: o, .. }) => o == op,
                _ => false,
            };
            assert!(matches, "op {op} tracked for {tenant}, which waits on {wait:?}");
            assert!(op.0 < self.issued, "op {op} tracked but never issued");
        }
        for (tenant, m) in &self.active {
            assert!(m.events.len() <= MAX_EVENTS_PER_MIGRATION, "{tenant}: events unbounded");
            if let Wait::Persist { op, .. } | Wait::Call { op, .. } = &m.wait {
                assert_eq!(self.ops.get(op), Some(tenant), "{tenant}: its op is untracked");
            }
            let Some(current) = m.current() else {
                panic!("{tenant}: an active migration with no record");
            };
            assert_eq!(current.tenant, *tenant, "migration keyed by the wrong tenant");
            assert_ne!(current.origin, current.destination, "{tenant}: origin is destination");
            if let Some(g) = current.phase.destination_generation() {
                assert!(
                    g > current.origin_generation,
                    "{tenant}: destination generation {g} not above the origin's"
                );
            }
            if let (
                Some(durable),
                Wait::Persist { record, .. } | Wait::RetryPersist { record, .. },
            ) = (&m.durable, &m.wait)
            {
                assert!(
                    record.phase.rank() >= durable.phase.rank(),
                    "{tenant}: phase goes back from {} to {}",
                    durable.phase.name(),
                    record.phase.name()
                );
            }
            if m.durable.is_none() {
                assert!(m.start_req.is_some(), "{tenant}: a start with no request to answer");
            }
            if let Some(d) = &m.durable {
                assert!(!matches!(d.phase, Phase::Done { .. }), "{tenant}: Done but active");
            }
            if let Wait::Call { step, .. } | Wait::RetryStep { step, .. } = m.wait {
                let durable = m.durable.as_ref().expect("calls only after the start is durable");
                steps::assert_step_in_phase(step, &durable.phase);
            }
        }
        for (tenant, (record, events)) in &self.finished {
            assert!(matches!(record.phase, Phase::Done { .. }), "{tenant}: finished, not Done");
            assert!(events.len() <= MAX_EVENTS_PER_MIGRATION, "{tenant}: events unbounded");
            assert!(!self.active.contains_key(tenant), "{tenant}: finished and active");
        }
    }
}
