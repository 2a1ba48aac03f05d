//! pf for softnet: the pf.conf language (parser and `pfctl -nv` printer).
//!
//! ```
//! use softnet_pf::{parse::parse_ruleset, print::{print_ruleset, PrintOpts}, resolver::StaticResolver};
//! let rs = parse_ruleset("pass in proto tcp to port ssh\n", "pf.conf", &StaticResolver::example()).unwrap();
//! assert_eq!(print_ruleset(&rs, &PrintOpts::default()), "pass in proto tcp from any to any port = 22 flags S/SA\n");
//! ```

pub mod error;
mod lexer;
pub mod model;
pub mod names;
pub mod parse;
pub mod print;
pub mod resolver;

pub use error::ParseError;
pub use model::Ruleset;
pub use parse::{check_supported, load_ruleset, parse_ruleset};
pub use print::{print_ruleset, PrintOpts};
pub use resolver::{IfAddr, IfResolver, StaticResolver};
