//! softnet: a multi-core user-space router and pf firewall.

mod bench;
mod demo;
mod show;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "softnet", version, about = "multi-core user-space router and pf firewall")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
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
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Demo { workers, flood } => demo::run(workers.max(1), flood),
        Cmd::Bench { seconds, repeat, quick } => bench::run(seconds, repeat.max(1), quick),
    }
}
