//! The `strata` command.
//!
//! - `strata init [--dir DIR]`: write a working configuration for the embedded
//!   defaults (local-directory remote storage, SQLite control plane) into DIR.
//! - `strata pageserver --config FILE [-c KEY=VALUE]… [--rebuild-generations]
//!   [--print-config]`: run a node (or print its effective configuration).
//! - `strata control --listen ADDR --db sqlite:PATH|postgres://… [--token T | --key-file K…]`:
//!   run the control plane service (`strata_runtime_tokio::control`).
//! - `strata ctl [--url URL] [--token T] node register ID ADDRESS | node list |
//!   tenant create TENANT --node ID | tenant list`: its admin API.
//! - `strata token new-key FILE | mint --key-file FILE --scope admin|tenant|node
//!   [--tenant T] [--node N] [--ttl-secs N]`: keys and bearer tokens for the
//!   node's API and the control plane's (`strata_runtime_tokio::auth`).
//! - `strata scrub (--remote DIR|s3://BUCKET[/PREFIX] | --config FILE) [--tenant T]
//!   [--deep] [--json] [--purge --older-than DURATION [--yes]]`: check remote
//!   storage against its indexes (`strata_runtime_tokio::scrub`).
//! - `strata walredo [--replay FILE]`: the walredo child process (spoken to over
//!   stdin/stdout by the node), or the replay of a saved failing request.

#[cfg(not(madsim))]
mod cli {
    use camino::Utf8PathBuf;
    use clap::{Parser, Subcommand};
    use std::process::ExitCode;
    use strata_runtime_tokio::config::{CONFIG_FILE_NAME, FileConfig};

    #[derive(Parser)]
    #[command(
        name = "strata",
        version,
        about = "strata: a storage node for a disaggregated database"
    )]
    struct Cli {
        #[command(subcommand)]
        command: Command,
    }

    #[derive(Subcommand)]
    enum Command {
        /// Serve redo requests on stdin/stdout (the node spawns this as its walredo
        /// child), or with --replay, re-run a saved failing request and print the result.
        Walredo {
            #[arg(long)]
            replay: Option<std::path::PathBuf>,
        },
        /// Write a configuration for the embedded defaults (local-directory remote
        /// storage, SQLite control plane) into DIR.
        Init {
            #[arg(long, default_value = ".strata-data")]
            dir: Utf8PathBuf,
            /// Overwrite an existing configuration.
            #[arg(long)]
            force: bool,
        },
        /// Run a storage node.
        Pageserver {
            #[arg(long)]
            config: Utf8PathBuf,
            /// Start although the control-plane store does not know local tenants,
            /// setting each tenant's generation above the highest in remote storage.
            #[arg(long)]
            rebuild_generations: bool,
            /// Override one configuration key (dotted path), after the file and the
            /// STRATA_… environment variables; repeatable.
            #[arg(short = 'c', value_name = "KEY=VALUE")]
            set: Vec<String>,
            /// Print the effective configuration (file, environment, -c, defaults)
            /// as TOML and exit.
            #[arg(long)]
            print_config: bool,
        },
        /// Run the control plane: generations for every node (node API:
        /// /re-attach, /validate, /attach, /detach; admin API under /admin).
        Control {
            #[arg(long, default_value = "127.0.0.1:9090")]
            listen: String,
            /// The store: sqlite:PATH (created if missing) or
            /// postgres://USER:PASSWORD@HOST:PORT/DB (the schema is created in it).
            #[arg(long)]
            db: String,
            /// A static bearer token every request must carry (superseded by
            /// --key-file).
            #[arg(long, conflicts_with = "key_file")]
            token: Option<String>,
            /// A file holding an HS256 key (`strata token new-key`); repeat to
            /// rotate. Requests then carry a JWT: admin scope for the admin API,
            /// admin or node scope (for its own node) for the node-facing API.
            #[arg(long)]
            key_file: Vec<Utf8PathBuf>,
            /// A file holding the bearer token sent on every call to a node
            /// (creating a tenant, a migration's calls): an admin token of the
            /// nodes (`strata token mint --scope admin` with a node's key). Read at
            /// each call. Without it the calls carry no token, which only nodes
            /// with auth off accept.
            #[arg(long)]
            node_token_file: Option<Utf8PathBuf>,
        },
        /// Keys and bearer tokens for the node's HTTP API.
        Token {
            #[command(subcommand)]
            verb: TokenVerb,
        },
        /// Check remote storage against its indexes: missing, wrong-size or (--deep)
        /// corrupt layers, orphans, unknown index versions, deleted timelines that
        /// still hold objects, objects newer than any index. Exit 0 clean (orphans
        /// allowed), 1 problems found, 2 the scrubber's own error.
        Scrub(strata_runtime_tokio::scrub::ScrubArgs),
        /// Talk to a running control plane's admin API.
        Ctl {
            #[arg(long, default_value = "http://127.0.0.1:9090")]
            url: String,
            #[arg(long)]
            token: Option<String>,
            #[command(subcommand)]
            what: CtlWhat,
        },
    }

    #[derive(Subcommand)]
    enum TokenVerb {
        /// Write a new random HS256 key to FILE (never overwrites one).
        NewKey { file: Utf8PathBuf },
        /// Print a bearer token signed with the key in --key-file.
        Mint {
            #[arg(long)]
            key_file: Utf8PathBuf,
            /// admin (every route), tenant (one tenant's timelines: --tenant) or
            /// node (the control plane's node-facing API as one node: --node).
            #[arg(long)]
            scope: String,
            #[arg(long)]
            tenant: Option<String>,
            #[arg(long)]
            node: Option<u64>,
            /// How long the token is valid.
            #[arg(long, default_value_t = 3600)]
            ttl_secs: u64,
        },
    }

    #[derive(Subcommand)]
    enum CtlWhat {
        /// Pageservers.
        Node {
            #[command(subcommand)]
            verb: NodeVerb,
        },
        /// Tenants.
        Tenant {
            #[command(subcommand)]
            verb: TenantVerb,
        },
        /// Move a tenant to another registered node, printing each step as it
        /// happens (stderr) and the final state (stdout).
        Migrate {
            tenant_id: String,
            /// The destination node.
            #[arg(long)]
            to: u64,
            /// What the origin becomes: secondary_warm (default) or detached.
            #[arg(long)]
            origin_after: Option<String>,
        },
    }

    #[derive(Subcommand)]
    enum NodeVerb {
        /// Register a pageserver: its node_id and its HTTP address.
        Register { node_id: u64, address: String },
        /// List registered pageservers.
        List,
    }

    #[derive(Subcommand)]
    enum TenantVerb {
        /// Create a tenant on a registered node (it is attached there with a new
        /// generation).
        Create {
            tenant_id: String,
            #[arg(long)]
            node: u64,
        },
        /// List tenants with their node and generation.
        List,
    }

    pub fn main() -> ExitCode {
        let cli = Cli::parse();
        // The walredo child owns stdout for its protocol: no logging, no runtime.
        if let Command::Walredo { replay } = &cli.command {
            return match replay {
                None => strata_runtime_tokio::walredo_child::run_child(
                    std::io::stdin().lock(),
                    std::io::stdout().lock(),
                ),
                Some(file) => {
                    strata_runtime_tokio::walredo_child::replay(file, &mut std::io::stdout().lock())
                }
            };
        }
        strata_runtime_tokio::server::init_logging();
        match cli.command {
            Command::Walredo { .. } => unreachable!("handled above"),
            Command::Init { dir, force } => init(&dir, force),
            Command::Token { verb } => token(verb),
            Command::Scrub(args) => strata_runtime_tokio::scrub::run(&args),
            Command::Control { listen, db, token, key_file, node_token_file } => {
                control(&listen, &db, token, &key_file, node_token_file)
            }
            Command::Ctl { url, token, what } => {
                use strata_runtime_tokio::control::ctl::{self, Verb};
                if let CtlWhat::Migrate { tenant_id, to, origin_after } = &what {
                    let mut progress = |line: &str| eprintln!("{line}");
                    let result = ctl::migrate(
                        &url,
                        token.as_deref(),
                        tenant_id,
                        *to,
                        origin_after.as_deref(),
                        &mut progress,
                    );
                    return match result {
                        Ok(text) => {
                            println!("{text}");
                            ExitCode::SUCCESS
                        }
                        Err(e) => {
                            eprintln!("strata ctl: {e}");
                            ExitCode::FAILURE
                        }
                    };
                }
                let verb = match what {
                    CtlWhat::Node { verb: NodeVerb::Register { node_id, address } } => {
                        Verb::RegisterNode { node_id, address }
                    }
                    CtlWhat::Node { verb: NodeVerb::List } => Verb::ListNodes,
                    CtlWhat::Tenant { verb: TenantVerb::Create { tenant_id, node } } => {
                        Verb::CreateTenant { tenant_id, node_id: node }
                    }
                    CtlWhat::Tenant { verb: TenantVerb::List } => Verb::ListTenants,
                    CtlWhat::Migrate { .. } => unreachable!("handled above"),
                };
                match ctl::run(&url, token.as_deref(), &verb) {
                    Ok(text) => {
                        println!("{text}");
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        eprintln!("strata ctl: {e}");
                        ExitCode::FAILURE
                    }
                }
            }
            Command::Pageserver { config, set, print_config: true, .. } => {
                match strata_runtime_tokio::server::effective_config(&config, &set) {
                    Ok(c) => {
                        print!("{}", c.effective().to_toml());
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        eprintln!("strata: {e}");
                        ExitCode::FAILURE
                    }
                }
            }
            Command::Pageserver { config, rebuild_generations, set, print_config: false } => {
                let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        eprintln!("strata: cannot start the runtime: {e}");
                        return ExitCode::FAILURE;
                    }
                };
                match runtime.block_on(strata_runtime_tokio::server::run_pageserver(
                    &config,
                    &set,
                    rebuild_generations,
                )) {
                    Ok(true) => ExitCode::SUCCESS,
                    Ok(false) => {
                        eprintln!(
                            "strata: stopped, but not everything acknowledged is visible (the grace period ended, or a tenant is broken: see the log)"
                        );
                        ExitCode::FAILURE
                    }
                    Err(e) => {
                        eprintln!("strata: {e}");
                        ExitCode::FAILURE
                    }
                }
            }
        }
    }

    fn control(
        listen: &str,
        db: &str,
        token: Option<String>,
        key_files: &[Utf8PathBuf],
        node_token_file: Option<Utf8PathBuf>,
    ) -> ExitCode {
        use strata_runtime_tokio::control::service::{
            self, ControlAuth, ControlService, NodeToken,
        };
        let node_token = NodeToken::from_file(node_token_file);
        if let Err(e) = node_token.header() {
            eprintln!("strata control: --node-token-file: {e}");
            return ExitCode::FAILURE;
        }
        let auth = if key_files.is_empty() {
            ControlAuth::from(token)
        } else {
            match strata_runtime_tokio::auth::Auth::from_key_files(key_files) {
                Ok(a) => ControlAuth::Jwt(std::sync::Arc::new(a)),
                Err(e) => {
                    eprintln!("strata control: {e}");
                    return ExitCode::FAILURE;
                }
            }
        };
        let spec = match strata_adapters::control_store::DbSpec::parse(db) {
            Ok(spec) => spec.describe(),
            Err(e) => {
                eprintln!("strata control: {e}");
                return ExitCode::FAILURE;
            }
        };
        let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
            Ok(rt) => rt,
            Err(e) => {
                eprintln!("strata control: cannot start the runtime: {e}");
                return ExitCode::FAILURE;
            }
        };
        let result = runtime.block_on(async {
            let service = ControlService::open_with_node_token(db, auth, node_token).await?;
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .map_err(|e| format!("binding {listen}: {e}"))?;
            tracing::info!(%listen, db = %spec, "control plane serving");
            let stop = strata_runtime_tokio::server::shutdown_signal();
            service::serve(listener, service, stop).await.map_err(|e| e.to_string())
        });
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("strata control: {e}");
                ExitCode::FAILURE
            }
        }
    }

    fn token(verb: TokenVerb) -> ExitCode {
        use strata_runtime_tokio::auth;
        let result = match verb {
            TokenVerb::NewKey { file } => {
                auth::write_new_key(&file).map(|()| format!("wrote a new key to {file}"))
            }
            TokenVerb::Mint { key_file, scope, tenant, node, ttl_secs } => {
                auth::mint_with_key_file(&key_file, &scope, tenant.as_deref(), node, ttl_secs)
            }
        };
        match result {
            Ok(text) => {
                println!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("strata token: {e}");
                ExitCode::FAILURE
            }
        }
    }

    fn init(dir: &Utf8PathBuf, force: bool) -> ExitCode {
        let path = dir.join(CONFIG_FILE_NAME);
        if path.exists() && !force {
            println!("{path} exists; keeping it (use --force to overwrite)");
            return ExitCode::SUCCESS;
        }
        if let Err(e) = std::fs::create_dir_all(dir) {
            eprintln!("strata init: creating {dir}: {e}");
            return ExitCode::FAILURE;
        }
        if let Err(e) = std::fs::write(&path, FileConfig::embedded_defaults().to_toml()) {
            eprintln!("strata init: writing {path}: {e}");
            return ExitCode::FAILURE;
        }
        println!("wrote {path}");
        ExitCode::SUCCESS
    }
}

#[cfg(not(madsim))]
fn main() -> std::process::ExitCode {
    cli::main()
}

/// The simulator runs nodes through `strata-runtime-sim`, not this binary.
#[cfg(madsim)]
fn main() {}
