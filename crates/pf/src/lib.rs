//! pf for softnet: the pf.conf language (parser and `pfctl -nv` printer).
//!
//! ```
//! use softnet_pf::{parse::parse_ruleset, print::{print_ruleset, PrintOpts}, resolver::StaticResolver};
//! let rs = parse_ruleset("pass in proto tcp to port ssh\n", "pf.conf", &StaticResolver::example()).unwrap();
//! assert_eq!(print_ruleset(&rs, &PrintOpts::default()), "pass in proto tcp from any to any port = 22 flags S/SA\n");
//! ```

//!
//! * [`parse::parse_ruleset`] turns pf.conf text into an expanded
//!   [`model::Ruleset`]: one [`model::Rule`] per list combination, interface
//!   names and `self` resolved through an [`resolver::IfResolver`], defaults
//!   filled in. Every error is collected as `FILE:LINE: message`.
//! * [`parse::load_ruleset`] also runs [`parse::check_supported`], which
//!   refuses what the packet filter does not do yet ("… not supported
//!   yet"): `af-to`, `synproxy state`, queues, `set
//!   prio`/`set delay`, divert-to/divert-reply other than for tcp and udp,
//!   divert-reply without state, divert-packet with af-to, IPv6 next hops, tables defined
//!   inside anchors, and on `inet6` rules nat-to/rdr-to/binat-to, scrub
//!   options and source tracking.
//! * Anchors: [`parse::parse_ruleset_in`] parses a ruleset for an anchor
//!   path (`pfctl -a`) with `include` and `load anchor` files from a
//!   [`parse::FileSource`]; [`anchor`] resolves anchor paths as pf does;
//!   [`Pf::load_anchor`] and [`Pf::flush_anchor`] change one anchor of the
//!   running tree in one swap.
//! * [`print::print_ruleset`] prints like OpenBSD `pfctl -nv`; `-o basic`
//!   (the default) drops duplicate rules.
//!
//! Known differences from pfctl's output: `-o basic` only removes
//! duplicates (no reordering, no automatic tables); in `-nv` output (where
//! every `set` line comes before the rules) a rule that is floating under a
//! final `set state-policy if-bound` prints `keep state (floating)`, which
//! pfctl leaves out: pfctl's text would parse back if-bound, so it neither
//! round-trips nor means the same (`-sr`, with no `set` lines, prints it as
//! pfctl does); tag names with blanks print quoted, so that the printed form
//! parses back to the same ruleset; `set ruleset-optimization` is not
//! printed; `block return-icmp(CODE)` without an address family prints
//! `return-icmp(CODE, port-unr)`, where pfctl's grammar stores the IPv4
//! default as the ICMPv6 code and prints `return-icmp(CODE, 3)` (which
//! parses back as `addr-unr`); an unquoted number is taken by `set debug`
//! (pfctl wants it quoted but prints it bare).

pub mod addr;
pub mod anchor;
mod batch;
pub mod error;
pub mod lb;
mod lexer;
pub mod model;
pub mod names;
pub mod parse;
pub mod print;
pub mod resolver;
pub mod rule_opts;
mod services;

// Evaluation: compiled rulesets, states, tables, pflog, the filter.
pub mod chksum;
pub mod compile;
pub mod divert;
pub mod eval;
pub mod filter;
pub mod frag;
pub mod frag6;
pub mod ipopt;
pub mod pflog;
pub mod route;
pub mod scrub;
pub mod show;
pub mod srcnode;
pub mod state;
pub mod status;
mod sync;
pub mod table;
pub mod tablectl;
pub mod tcp_track;
pub mod tcpnorm;
pub mod xlhold;

pub use error::ParseError;
pub use filter::Pf;
pub use model::Ruleset;
pub use parse::{check_supported, load_ruleset, parse_ruleset, parse_ruleset_with, ParseOptions, Parsed};
pub use print::{print_ruleset, PrintOpts};
pub use resolver::{IfAddr, IfResolver, StaticResolver};
