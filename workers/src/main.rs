//! `careslot-worker`: the background job process.

use domain::settings::Settings;
use std::process::ExitCode;

fn main() -> ExitCode {
    match Settings::from_env() {
        Ok(_) => {
            eprintln!("careslot-worker: the job queue is not implemented yet");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("careslot-worker: {e}");
            ExitCode::from(2)
        }
    }
}
