//! The `nexus-auth` binary: parses the command line and runs the library.

use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = nexus_auth::cli::parse();
    nexus_auth::cli::init_logging(&cli);
    let code = actix_web::rt::System::new().block_on(nexus_auth::cli::run(cli));
    nexus_auth::log_output::flush();
    code
}
