//! `stratad`: the Strata engine daemon.

fn main() -> std::process::ExitCode {
    eprintln!("stratad: the engine is being built; see the project's open issues");
    std::process::ExitCode::FAILURE
}
