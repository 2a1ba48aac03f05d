//! softnet: a multi-core user-space router and pf firewall.

use clap::{Parser, Subcommand};
use softnet::{admin, bench, bench6, daemon, demo, pfctl, top};
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "softnet", version, about = "multi-core user-space router and pf firewall")]
struct Cli {
    /// Control socket of the daemon the admin commands talk to
    /// (default: $SOFTNET_SOCKET, else /run/softnet/softnet.sock).
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the router in the foreground (logs to stderr; SIGHUP reloads, SIGTERM stops).
    Up {
        /// Configuration file (TOML).
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
        /// Log level, overriding the configuration's `log`.
        #[arg(long, value_name = "LEVEL", value_parser = clap::builder::PossibleValuesParser::new(daemon::LOG_LEVELS))]
        log: Option<String>,
        /// Log lines as JSON objects (as the configuration's `log_format = "json"`).
        #[arg(long)]
        log_json: bool,
    },
    /// Validate a configuration file without starting anything.
    Check {
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Routing tables, as route(8): [-T rtable] show | add | delete | change | get | monitor.
    #[command(disable_help_flag = true)]
    Route {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// ARP table, as arp(8): -an | -s HOST MAC [temp|permanent] [pub] | -d HOST | -da.
    #[command(disable_help_flag = true)]
    Arp {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// IPv6 neighbor cache, as ndp(8): -an | -s HOST MAC [temp] [proxy] | -d HOST | -c.
    #[command(disable_help_flag = true)]
    Ndp {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Interfaces, as ifconfig(8): [IF [inet|inet6 ADDR/LEN [delete]] [up|down] [destroy]].
    #[command(disable_help_flag = true)]
    Ifconfig {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Network status, as netstat(1): -rn | -s | -i.
    #[command(disable_help_flag = true)]
    Netstat {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Router advertisements: the running configuration as rad -nv prints it, and what each interface advertises.
    #[command(disable_help_flag = true)]
    Rad {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// pf, as pfctl(8): -f FILE | -nvf FILE | -sr [-v] | -ss | -si | -st | -sm | -sT | -sa | -F ... | -k HOST | -t T -T ... | -e | -d.
    #[command(disable_help_flag = true)]
    Pfctl {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// A live view of the router, as systat(1) and pftop: per-interface and per-worker packet rates, states, drops.
    Top {
        /// Batch mode: print frame after frame (for scripts) instead of redrawing the terminal.
        #[arg(short = 'b')]
        batch: bool,
        /// Seconds between frames.
        #[arg(short = 'd', default_value_t = 1.0, value_name = "SECONDS")]
        delay: f64,
        /// Stop after this many frames.
        #[arg(short = 'n', value_name = "COUNT")]
        count: Option<u64>,
    },
    /// Run an in-memory topology (two hosts, one router) and report: no root, no setup.
    Demo {
        /// Router workers.
        #[arg(long, default_value_t = 2)]
        workers: usize,
        /// Datagrams in the UDP flood.
        #[arg(long, default_value_t = 200_000)]
        flood: u64,
    },
    /// In-memory forwarding benchmark (64-byte UDP; 1/2 workers, 10/100k routes, 1/10k flows).
    Bench {
        /// Seconds measured per run.
        #[arg(long, default_value_t = 2.0)]
        seconds: f64,
        /// Runs per case (the median is reported).
        #[arg(long, default_value_t = 3)]
        repeat: usize,
        /// Fewer cases.
        #[arg(long)]
        quick: bool,
        /// pf cases instead: keep state, 1,000 rules, a 100k-prefix table, state creation.
        #[arg(long)]
        pf: bool,
        /// IPv6 forwarding against IPv4's with 100,000 routes each.
        #[arg(long)]
        inet6: bool,
    },
}

/// The admin commands take BSD syntax, which clap would misread
/// (`arp -an`, `route add -net ...`): they are dispatched before clap.
fn admin_dispatch(argv: &[String]) -> Option<i32> {
    let mut i = 1;
    let mut socket = None;
    loop {
        match argv.get(i).map(String::as_str) {
            Some("--socket") => {
                socket = Some(PathBuf::from(argv.get(i + 1)?));
                i += 2;
            }
            Some(a) if a.starts_with("--socket=") => {
                socket = Some(PathBuf::from(&a["--socket=".len()..]));
                i += 1;
            }
            _ => break,
        }
    }
    let tool = argv.get(i)?;
    if tool == "pfctl" {
        let path = admin::socket_path(socket);
        let (mut out, mut err) = (std::io::stdout().lock(), std::io::stderr());
        return Some(pfctl::run(&path, &argv[i + 1..], &mut out, &mut err));
    }
    if !admin::TOOLS.contains(&tool.as_str()) {
        return None;
    }
    let path = admin::socket_path(socket);
    let (mut out, mut err) = (std::io::stdout().lock(), std::io::stderr());
    Some(admin::run(tool, &path, &argv[i + 1..], &mut out, &mut err))
}

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    if let Some(code) = admin_dispatch(&argv) {
        std::process::exit(code);
    }
    let cli = match Cli::try_parse_from(&argv) {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                e.exit();
            }
            let _ = e.print();
            std::process::exit(1);
        }
    };
    let code = match cli.cmd {
        Cmd::Up { config, log, log_json } => daemon::up(&config, log.as_deref(), log_json),
        Cmd::Check { config } => daemon::check(&config),
        // Reached only when the dispatch above did not take them (never).
        Cmd::Route { .. }
        | Cmd::Arp { .. }
        | Cmd::Ndp { .. }
        | Cmd::Rad { .. }
        | Cmd::Ifconfig { .. }
        | Cmd::Netstat { .. }
        | Cmd::Pfctl { .. } => 1,
        Cmd::Top { batch, delay, count } => top::run(&admin::socket_path(cli.socket.clone()), batch, delay, count),
        Cmd::Demo { workers, flood } => exit_code(demo::run(workers.max(1), flood)),
        Cmd::Bench { seconds, repeat, inet6: true, .. } => exit_code(bench6::run(seconds, repeat.max(1))),
        Cmd::Bench { seconds, repeat, quick, pf: false, .. } => exit_code(bench::run(seconds, repeat.max(1), quick)),
        Cmd::Bench { seconds, repeat, quick, pf: true, .. } => exit_code(bench::run_pf(seconds, repeat.max(1), quick)),
    };
    std::process::exit(code);
}

fn exit_code(r: anyhow::Result<()>) -> i32 {
    match r {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    }
}
