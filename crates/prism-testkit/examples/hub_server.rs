//! The loopback stand-in hub as a process, for scripts that point Python's `huggingface_hub`
//! (or `prism`) at it: `cargo run --release -p prism-testkit --example hub_server -- ORG/NAME=DIR …`
//! serves each directory as a repository, prints its URL (the `HF_ENDPOINT` to use) on one
//! line, and stops when its standard input closes.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;

use prism_testkit::hub_server::{HubServer, ServedRepo};

fn main() {
    let mut repos = BTreeMap::new();
    for arg in std::env::args().skip(1) {
        let Some((repo, dir)) = arg.split_once('=') else {
            eprintln!("usage: hub_server ORG/NAME=DIR ...");
            std::process::exit(2);
        };
        repos.insert(repo.to_string(), ServedRepo::from_dir(Path::new(dir)));
    }
    let server = HubServer::start(repos, None);
    println!("{}", server.url());
    let _ = std::io::stdout().flush();
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    drop(server);
}
