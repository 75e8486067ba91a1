//! A swarm's start seed derived from the commit under test (`strata-sim
//! --seeds-from-commit N`): each commit covers seeds no other commit is likely to,
//! and a rerun of the same commit runs exactly the same seeds.
//!
//! The commit is `STRATA_COMMIT` when set (CI can pin it), else `git rev-parse
//! HEAD`. The start is [`COMMIT_SEED_BASE`] plus a 64-bit hash (FNV-1a, then the
//! splitmix64 finaliser) of the commit id modulo [`COMMIT_SEED_SPAN`]: far above
//! the seeds CI's fixed swarms run (1–100, cluster 1–200) and the hand-run ranges
//! (up to 10,000), and small enough to read and type.

/// The lowest start seed a commit can get.
pub const COMMIT_SEED_BASE: u64 = 1_000_000;
/// Start seeds lie in `BASE..BASE + SPAN`.
pub const COMMIT_SEED_SPAN: u64 = 1_000_000_000;

/// The start seed of `commit` (its id as `git rev-parse` prints it; surrounding
/// whitespace and letter case do not matter).
pub fn start_seed(commit: &str) -> u64 {
    let mut h: u64 = 0xCBF2_9CE4_8422_2325;
    for b in commit.trim().to_ascii_lowercase().bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01B3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    h ^= h >> 31;
    COMMIT_SEED_BASE + h % COMMIT_SEED_SPAN
}

/// The commit under test: `STRATA_COMMIT` if set and not empty, else `git
/// rev-parse HEAD` in the current directory.
pub fn current_commit() -> Result<String, String> {
    if let Ok(commit) = std::env::var("STRATA_COMMIT")
        && !commit.trim().is_empty()
    {
        return Ok(commit.trim().to_string());
    }
    let output = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output()
        .map_err(|e| format!("git rev-parse HEAD: {e} (set STRATA_COMMIT instead)"))?;
    if !output.status.success() {
        return Err(format!(
            "git rev-parse HEAD: {} (set STRATA_COMMIT instead)",
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_commit_always_gets_the_same_start_seed() {
        let commit = "f4043cd3b7a1e0d2c9f8e7d6c5b4a3928170f6e5";
        assert_eq!(start_seed(commit), start_seed(commit));
        assert_eq!(start_seed(commit), start_seed(&format!("  {}\n", commit.to_uppercase())));
        // Pinned, so that a change of the derivation is seen (it would move every
        // commit's seeds).
        assert_eq!(start_seed(commit), PINNED);
    }

    const PINNED: u64 = 808_440_214;

    #[test]
    fn commits_get_different_start_seeds_above_the_fixed_swarms() {
        let seeds: std::collections::BTreeSet<u64> =
            (0..1_000u32).map(|i| start_seed(&format!("{i:040x}"))).collect();
        assert!(seeds.len() > 990, "{} distinct start seeds of 1,000 commits", seeds.len());
        assert!(
            seeds
                .iter()
                .all(|s| (COMMIT_SEED_BASE..COMMIT_SEED_BASE + COMMIT_SEED_SPAN).contains(s))
        );
    }
}
