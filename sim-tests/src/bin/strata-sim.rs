//! `strata-sim`: replay one simulator seed with its trace, or run a swarm with a
//! summary table (`strata_sim_tests::cli`). Only the madsim build simulates:
//! `RUSTFLAGS="--cfg madsim" CARGO_TARGET_DIR=target/sim cargo run -p strata-sim-tests --bin strata-sim -- --help`.

#[cfg(madsim)]
fn main() -> std::process::ExitCode {
    use clap::Parser;
    let cli = strata_sim_tests::cli::Cli::parse();
    std::process::ExitCode::from(strata_sim_tests::cli::main(cli))
}

#[cfg(not(madsim))]
fn main() -> std::process::ExitCode {
    eprintln!(
        "strata-sim runs only in the madsim build: RUSTFLAGS=\"--cfg madsim\" CARGO_TARGET_DIR=target/sim cargo run -p strata-sim-tests --bin strata-sim -- --help"
    );
    std::process::ExitCode::from(2)
}
